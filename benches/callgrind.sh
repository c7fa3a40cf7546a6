#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind (steady on a
# noisy machine, unlike time): grace's demo in both thread shapes and the
# hyper peer, each serving the same N `GET /` requests over 64 keep-alive
# connections (benches/count_load.py).
#
#   benches/callgrind.sh            # N=20000 C=64 -> benches/results/callgrind.md
#   GRACE_B_BIN=/tmp/old-hello benches/callgrind.sh   # also another build: an A/B
#
# For each server: start it under callgrind, warm it up with 2,000
# requests, zero the counters (`callgrind_control -z`), send N requests,
# dump (`callgrind_control -d`), and divide the dump's instruction total by
# N. All threads are counted (--separate-threads=no), the kernel is not:
# callgrind sees user-space instructions only, so this is the cost of the
# server's own code and libraries per request, syscalls excluded. Server
# CPU time per request, which includes the kernel, is in run.sh's report.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${N:-20000}"
C="${C:-64}"
OUT="${OUT:-$ROOT/benches/results/callgrind.md}"
command -v valgrind >/dev/null || { echo "callgrind.sh needs valgrind (apt-get install valgrind)" >&2; exit 1; }
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
(cd "$ROOT" && cargo build --release --example hello)
(cd "$ROOT" && cargo build --release --manifest-path benches/peers/Cargo.toml)
GRACE_BIN="${GRACE_BIN:-$ROOT/target/release/examples/hello}"
GRACE_B_BIN="${GRACE_B_BIN:-}"
WORK="$(mktemp -d /tmp/grace-callgrind.XXXXXX)"
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

measure() { # name, then the server's command with PORT in it
    local name=$1 p pid out total
    shift
    p=$(port)
    local cmd=("${@//PORT/$p}")
    out="$WORK/$name.out"
    taskset -c 0 valgrind --tool=callgrind --separate-threads=no --callgrind-out-file="$out.%p" \
        "${cmd[@]}" >"$WORK/$name.log" 2>&1 &
    pid=$!
    # Ready when it answers (valgrind starts slowly: at most 60 s).
    local i
    for ((i = 0; i < 600; i++)); do
        python3 "$ROOT/benches/count_load.py" "$p" 1 1 / 2 >/dev/null 2>&1 && break
        sleep 0.1
    done
    taskset -c 1 python3 "$ROOT/benches/count_load.py" "$p" 2000 "$C" / 300 >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    taskset -c 1 python3 "$ROOT/benches/count_load.py" "$p" "$N" "$C" / 600 >"$WORK/$name.load"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # The dump taken by -d is the file with the highest part number.
    local dump
    dump=$(ls -v "$out.$pid".* 2>/dev/null | tail -1)
    total=$(awk '/^summary:|^totals:/ { print $2; exit }' "$dump")
    echo "$name $total"
}

{
    measure grace "$GRACE_BIN" --listen 127.0.0.1:PORT
    measure grace-pc "$GRACE_BIN" --listen 127.0.0.1:PORT --threads per-connection
    if [ -n "$GRACE_B_BIN" ]; then
        measure grace-b "$GRACE_B_BIN" --listen 127.0.0.1:PORT
        measure grace-b-pc "$GRACE_B_BIN" --listen 127.0.0.1:PORT --threads per-connection
    fi
    measure hyper "$ROOT/benches/peers/target/release/hyper-hello" 127.0.0.1:PORT
} | tee "$WORK/totals.txt"

python3 - "$WORK/totals.txt" "$OUT" "$N" "$C" "$(git -C "$ROOT" rev-parse --short HEAD)" <<'PY'
import sys, time
totals, out, n, c, commit = sys.argv[1:]
n = int(n)
rows = {}
for line in open(totals):
    name, total = line.split()
    rows[name] = int(total) / n
h = rows.get("hyper")
lines = ["# Instructions per request (callgrind)", "",
         f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; grace commit {commit}",
         f"- `GET /`, {n:,} requests over {c} keep-alive connections (after 2,000 to warm up), "
         "user-space instructions of all the server's threads, from `benches/callgrind.sh`", "",
         "| server | instructions per request | ratio to hyper |", "|---|---:|---:|"]
label = {"grace": "grace (a thread per request)", "grace-pc": "grace (a thread per connection)",
         "grace-b": "grace-b, GRACE_B_BIN (a thread per request)",
         "grace-b-pc": "grace-b, GRACE_B_BIN (a thread per connection)", "hyper": "hyper + tokio"}
for name, v in rows.items():
    lines.append(f"| {label.get(name, name)} | {v:,.0f} | {v / h:.2f} |" if h else f"| {name} | {v:,.0f} | |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
