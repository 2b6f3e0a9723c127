#!/usr/bin/env bash
# Opens timeline.html (sim/timeline/) in a real browser, headless Chromium, and
# fails if the page reports a script error or draws no lanes:
#   1. installs Debian's `chromium` if it is missing (as root, or through sudo);
#   2. writes two runs' artifacts with the built simulation binary: a
#      linearizability failure (mutant stale_reads, coord_read_races seed 1: the
#      counterexample view) and a passing crash_restart run (SIM_ARTIFACTS=always:
#      kills, restarts, torn writes);
#   3. loads each page with --dump-dom: once drawn, page.js sets
#      <body data-lanes=N data-rendered=yes>, and window.onerror sets data-error;
#   4. proves the check can fail: a copy of the page with a planted script error
#      must be reported;
#   5. saves a screenshot of each page and prints its path.
# Usage: ci/timeline-check.sh              (SIM_TARGET_DIR as ci/sim-cargo.sh;
#        SIM_BIN=path ci/timeline-check.sh  a built simulation binary: no cargo;
#        TIMELINE_SHOT_DIR=dir              where the screenshots go)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "chromium missing and no apt-get: install Debian's chromium by hand" >&2; exit 1; }
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  browser=$(command -v chromium)
fi

if [ -z "${SIM_BIN:-}" ]; then
  SIM_BIN=$(ci/sim-cargo.sh --no-run 2>&1 | sed -n 's/.*Executable tests\/sim.rs (\(.*\))$/\1/p' | tail -1)
  [ -x "$SIM_BIN" ] || { echo "could not build the simulation binary (ci/sim-cargo.sh --no-run)" >&2; exit 1; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shots="${TIMELINE_SHOT_DIR:-target/timeline-check}"
mkdir -p "$shots"

# The artifact folder a run printed (`artifacts: DIR`).
artifacts_of() { sed -n 's/^artifacts: //p' "$1" | tail -1; }

# chromium with a throwaway profile; its own chatter (dbus, GPU) goes to $work.
chrome() { timeout 120 "$browser" --headless --disable-gpu --no-sandbox --user-data-dir="$work/profile" "$@" 2>>"$work/chromium.log"; }

# Loads a page; prints `lanes=N` or the error; returns non-zero unless it drew lanes
# without a script error.
check_page() {
  local page="$1" body
  body=$(chrome --virtual-time-budget=5000 --dump-dom "file://$(realpath "$page")" | grep -o '<body[^>]*>' | head -1)
  if grep -q 'data-error=' <<<"$body"; then
    echo "script error: $(sed 's/.*data-error="\([^"]*\)".*/\1/' <<<"$body")"
    return 1
  fi
  local lanes
  lanes=$(sed -n 's/.*data-lanes="\([0-9]*\)".*/\1/p' <<<"$body")
  if [ -z "$lanes" ] || [ "$lanes" -eq 0 ] || ! grep -q 'data-rendered="yes"' <<<"$body"; then
    echo "no lanes drawn (body: $body)"
    return 1
  fi
  echo "lanes=$lanes"
}

failed=0
look_at() {
  local name="$1" page="$2/timeline.html" verdict
  [ -f "$page" ] || { echo "$name: no timeline.html in $2" >&2; failed=1; return; }
  if verdict=$(check_page "$page"); then
    chrome --hide-scrollbars --window-size=1600,1000 --screenshot="$shots/$name.png" "file://$(realpath "$page")" >/dev/null
    echo "$name: $verdict; page $page"
    echo "$name: screenshot $(realpath "$shots/$name.png")"
  else
    echo "$name: FAILED: $verdict ($page)" >&2
    failed=1
  fi
}

echo "== a linearizability failure (SIM_MUTANT=stale_reads coord_read_races::seed_1)"
SIM_MUTANT=stale_reads SIM_SEEDS=1..2 "$SIM_BIN" --exact coord_read_races::seed_1 >"$work/lin.out" 2>&1 || true
grep -q 'linearizability violated' "$work/lin.out" || { echo "the mutant was not caught:" >&2; tail -20 "$work/lin.out" >&2; exit 1; }
lin=$(artifacts_of "$work/lin.out")
look_at linearizability "$lin"

echo "== a passing run with faults (SIM_ARTIFACTS=always crash_restart::seed_1)"
SIM_ARTIFACTS=always SIM_SEEDS=1..2 "$SIM_BIN" --exact crash_restart::seed_1 >"$work/pass.out" 2>&1 \
  || { echo "crash_restart::seed_1 failed:" >&2; tail -20 "$work/pass.out" >&2; exit 1; }
pass=$(dirname "$lin")/crash_restart-1.pass
look_at crash_restart "$pass"

echo "== the check itself fails on a page with a script error"
sed 's|</body>|<script>throw new Error("planted by timeline-check")</script></body>|' "$lin/timeline.html" >"$work/planted.html"
if verdict=$(check_page "$work/planted.html"); then
  echo "a planted script error went unnoticed ($verdict)" >&2
  failed=1
else
  echo "planted error reported: $verdict"
fi

[ "$failed" -eq 0 ] || { echo "timeline check failed (chromium's log: see above)" >&2; exit 1; }
echo "== timeline.html draws in chromium"
