#!/usr/bin/env bash
# How long `hello upgrade` takes to give its verdict, with probation 0 and
# with the default (2 s), and when the old process exits after the new one
# is ready (probation 0). 10 upgrades each, against the release demo.
#
#   bash benches/verdict.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example hello >/dev/null
BIN=$PWD/target/release/examples/hello
DIR=$(mktemp -d)
run() { # probation_ms
    local sock=$DIR/ctl-$1.sock log=$DIR/log-$1
    RUST_LOG=info "$BIN" --listen 127.0.0.1:0 --control "$sock" --probation-ms "$1" 2>"$log" &
    local pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.02; done
    local times=()
    for _ in $(seq 10); do
        local t0 t1 old
        old=$("$BIN" status --control "$sock" | sed 's/.*"pid":\([0-9]*\).*/\1/')
        t0=$(date +%s%N)
        "$BIN" upgrade --control "$sock" >/dev/null
        t1=$(date +%s%N)
        times+=("$(( (t1 - t0) / 1000000 ))")
        # The next upgrade is allowed once the old generation is gone (or a
        # zombie: orphans may not be reaped here).
        for _ in $(seq 500); do
            state=$(awk '{print $3}' /proc/$old/stat 2>/dev/null || echo gone)
            [ "$state" = Z ] || [ "$state" = gone ] && break
            sleep 0.01
        done
    done
    echo "probation $1 ms: hello upgrade -> verdict (ms): ${times[*]}"
    if [ "$1" = 0 ]; then
        # Old generation: "is ready after" line -> its "exiting" line.
        python3 - "$log" <<'PY'
import re, sys
ready, out = {}, []
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"(\d+)\.(\d+) \w+ +\S+: \[(\d+)\] child \d+ .* is ready after", line)
    if m: ready[m.group(3)] = int(m.group(1)) * 1000 + int(m.group(2))
    m = re.match(r"(\d+)\.(\d+) \w+ +\S+: hello: pid (\d+) exiting \(Upgraded\)", line)
    if m and m.group(3) in ready:
        out.append(int(m.group(1)) * 1000 + int(m.group(2)) - ready[m.group(3)])
print("probation 0 ms: old process exits (ms after the child is ready):", *out)
PY
    fi
    "$BIN" shutdown --control "$sock" >/dev/null || true
    wait "$pid" 2>/dev/null || true
}
run 0
run 2000
rm -rf "$DIR"
