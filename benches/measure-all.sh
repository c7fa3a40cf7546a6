#!/usr/bin/env bash
# Every measurement of the harness in one go (each step takes
# `flock /tmp/grace-cpu.lock` per cell/server itself; do not wrap this
# script in that flock):
#   benches/install-peers.sh   # once, as root
#   benches/measure-all.sh     # run.sh's defaults: RUNS=8 DURATION=3s (about 75 min in all)
# -> benches/results/{latest,callgrind,rss,restart,criterion}.md,
#    latest-connections.svg, latest-blocking.svg and restart.svg
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK="${LOCK-/tmp/grace-cpu.lock}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
cd "$ROOT"
bash benches/run.sh
bash benches/callgrind.sh
python3 benches/rss.py
python3 benches/handover.py peers
# criterion: build outside the lock, run under it.
cargo bench --manifest-path "$ROOT/benches/micro/Cargo.toml" --bench http --no-run
if [ -n "$LOCK" ]; then
    flock "$LOCK" cargo bench --manifest-path "$ROOT/benches/micro/Cargo.toml" --bench http -- --noplot | tee /tmp/grace-criterion.txt
else
    cargo bench --manifest-path "$ROOT/benches/micro/Cargo.toml" --bench http -- --noplot | tee /tmp/grace-criterion.txt
fi
