#!/usr/bin/env bash
# Restart under load with the demo as PID 1 of a PID namespace (what
# `docker run image /app/hello` gives): wrk -c64 keep-alive for 12 s while
# the holder (PID 1) is sent SIGUSR2 10 times, 1 s apart. Prints wrk's
# errors and non-2xx count, the holder's RSS and CPU time before and after,
# and how long the holder took from forwarding each SIGUSR2 to learning the
# new generation's pid (from its own log lines). Needs root (unshare) and wrk.
#
#   bash benches/pid1-restart.sh            # builds the release demo first
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example hello >/dev/null
BIN=$PWD/target/release/examples/hello
PORT=${PORT:-18123}
OUT=$(mktemp -d)
RUST_LOG=info taskset -c 0 unshare --pid --fork --mount-proc \
    "$BIN" --listen 127.0.0.1:$PORT 2>"$OUT/log" &
TOP=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.05; done
HOLDER=$(ps -o pid= --ppid $TOP | tr -d ' ')
stat_of() { # rss_kib pss_kib utime+stime ticks
    awk '/VmRSS/ {print $2}' /proc/$HOLDER/status
    awk '/^Pss:/ {print $2}' /proc/$HOLDER/smaps_rollup
    awk '{print $14 + $15}' /proc/$HOLDER/stat
}
read -r RSS0 PSS0 CPU0 < <(stat_of | paste -sd' ')
taskset -c 1 wrk -t1 -c64 -d12s --latency "http://127.0.0.1:$PORT/" >"$OUT/wrk" 2>&1 &
WRK=$!
sleep 1
for i in $(seq 10); do kill -USR2 $HOLDER; sleep 1; done
wait $WRK
read -r RSS1 PSS1 CPU1 < <(stat_of | paste -sd' ')
GEN=$(curl -s "http://127.0.0.1:$PORT/pid")
kill -TERM $HOLDER
wait $TOP && STATUS=0 || STATUS=$?
echo "== wrk"; cat "$OUT/wrk"
echo "== after 10 SIGUSR2: $GEN; namespace exit status after SIGTERM: $STATUS"
echo "== holder RSS: ${RSS0} KiB before, ${RSS1} KiB after (PSS ${PSS0} / ${PSS1} KiB);" \
    "CPU: $(( (CPU1 - CPU0) * 10 )) ms over the run (10 ms ticks)"
echo "== SIGUSR2 forwarded -> holder learns the new pid, per restart:"
grep -o 'serves now, [^ ]* [^ ]*' "$OUT/log" | sed 's/serves now, //' | paste -sd' '
rm -rf "$OUT"
