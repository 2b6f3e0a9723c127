#!/usr/bin/env bash
# Linearizability checker benchmark: `lincheck` (release build) on generated
# histories of known verdict — 1, 10 and 50 concurrent clients, 1k, 10k and 50k
# operations, linearizable and not (one injected stale read or lost write) — in
# both formats (Porcupine's key/value lines on ten keys; a Jepsen etcd log, one
# compare-and-set register), then on the golden files. Prints milliseconds per
# history (the best of RUNS runs: parse and decide, on the machine's cores).
# Fails if a verdict is wrong; never on time.
#
# Porcupine's published figures on its own 50-client key/value histories: 170 ms
# (c50-ok, linearizable) and 30 ms (c50-bad, not). Pass extra history files or
# folders (e.g. a local copy of Porcupine's test_data) to time them as well; their
# verdicts are printed, not checked.
#
# Usage: ci/bench-lincheck.sh [EXTRA_FILE_OR_DIR…]   (RUNS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-3}"
cargo build --release --features sim --bin lincheck
lincheck="${CARGO_TARGET_DIR:-target}/release/lincheck"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name → expected verdict
declare -A expected
for shape in kv etcd; do
  for clients in 1 10 50; do
    for ops in 1000 10000 50000; do
      faults="none stale-read"
      [ "$shape" = kv ] && faults="$faults lost-write"
      for fault in $faults; do
        name="$shape-c$clients-n$ops-$fault.txt"
        "$lincheck" --generate "$shape" --clients "$clients" --ops "$ops" --fault "$fault" \
          --seed 1 >"$work/$name"
        if [ "$fault" = none ]; then
          expected[$name]=linearizable
        else
          expected[$name]=not-linearizable
        fi
      done
    done
  done
done

golden=sim/checkers/linearizability/testdata
while IFS=$'\t' read -r file verdict; do
  [ "$file" = history ] && continue
  name="golden/$file"
  mkdir -p "$work/$(dirname "$name")"
  cp "$golden/$file" "$work/$name"
  if [ "$verdict" = true ]; then
    expected[$name]=linearizable
  else
    expected[$name]=not-linearizable
  fi
done <"$golden/VERDICTS.tsv"

extra=()
for arg in "$@"; do
  if [ -d "$arg" ]; then
    while IFS= read -r f; do extra+=("$f"); done < <(find "$arg" -type f \( -name '*.txt' -o -name '*.log' \) | sort)
  else
    extra+=("$arg")
  fi
done

files=()
for name in "${!expected[@]}"; do files+=("$work/$name"); done
mapfile -t files < <(printf '%s\n' "${files[@]}" | sort)
files+=("${extra[@]}")

# Best of $runs: lincheck prints "<file>\t<verdict>\t<ms>" per file.
for run in $(seq "$runs"); do
  "$lincheck" --timeout-secs 60 "${files[@]}" >"$work/run$run.tsv" || true
done

status=0
printf '%-40s %-17s %8s\n' history verdict ms
cat "$work"/run*.tsv | sort -t$'\t' -k1,1 -k3,3n | awk -F'\t' '!seen[$1]++' |
  sort -t$'\t' -k1,1 >"$work/best.tsv"
while IFS=$'\t' read -r file verdict ms; do
  name="${file#"$work"/}"
  want="${expected[$name]:-}"
  mark=""
  if [ -n "$want" ] && [ "$verdict" != "$want" ]; then
    mark="  WRONG: expected $want"
    status=1
  fi
  printf '%-40s %-17s %8s%s\n' "$name" "$verdict" "$ms" "$mark"
done <"$work/best.tsv"
exit "$status"
