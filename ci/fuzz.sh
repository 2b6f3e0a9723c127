#!/usr/bin/env bash
# Time-budgeted fuzzing sweep over every scenario with fresh seeds.
#
# Usage: ci/fuzz.sh --minutes M [--shard k/n] [--jobs J] [--seed-base B]
# Progress (seeds done, seeds/min, failures) goes to the terminal every 10 s. Each
# failing seed leaves its artifacts in target/sim-failures/<scenario>-<seed>/ and a
# replay line in target/sim-failures/failing-seeds.txt; the exit code is non-zero
# if any seed failed. Shards draw disjoint seeds, so n machines never repeat work.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=5 shard=1/1 jobs=2 base=1000000
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --shard) shard="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --seed-base) base="$2"; shift 2 ;;
    *) echo "usage: ci/fuzz.sh --minutes M [--shard k/n] [--jobs J] [--seed-base B]" >&2; exit 2 ;;
  esac
done

ci/sim-cargo.sh --no-run
rm -f target/sim-failures/failing-seeds.txt
echo "fuzz: ${minutes} min, shard ${shard}, ${jobs} jobs, seeds from ${base}"
SIM_SWEEP=fuzz SIM_SWEEP_MINUTES="$minutes" SIM_SHARD="$shard" SIM_JOBS="$jobs" SIM_SEED_BASE="$base" \
  ci/sim-cargo.sh -q
