#!/usr/bin/env bash
# Finds a failing fault schedule with proptest and shrinks it to a small scenario
# file under target/shrunk/ that replays it.
# Usage: ci/shrink.sh MUTANT [SCENARIO] [CASES]   e.g. ci/shrink.sh forget_vote crash_restart
set -euo pipefail
cd "$(dirname "$0")/.."

ci/sim-cargo.sh --no-run
SIM_MUTANT="${1:?mutant name}" SIM_SHRINK_SCENARIO="${2:-crash_restart}" SIM_SHRINK_CASES="${3:-200}" \
  SIM_SWEEP=shrink ci/sim-cargo.sh -q
