#!/usr/bin/env bash
# Large responses and TLS handshakes, in one session (issue: HTTP for
# embedding programs). The server on CPU 0, wrk on CPU 1, keep-alive, c4:
#   - GET /file?bytes=N   (ResponseBody::file: sendfile(2))
#   - GET /sized?bytes=N&chunked=1 (ResponseBody::stream: 16 KiB reads, chunked)
#   - hyper + tokio (benches/peers hyper-hello) serving the same file with
#     tokio::fs, 16 KiB reads, Content-Length
# for N = 1 MiB and 64 MiB, RUNS interleaved runs of DUR each, reporting
# req/s, MB/s and the server's CPU time per MB (utime+stime from /proc).
# The peer is built here (cargo build --release in benches/peers).
# Then TLS (examples/tls.rs): wrk with `Connection: close`, so every request
# is a new handshake: handshakes/s and server CPU per handshake.
#
#   bash benches/bodies.sh        # needs wrk; builds the release demos
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DUR=${DUR:-5s}
cargo build --release --example hello --example tls >/dev/null 2>&1
cargo build --release --manifest-path benches/peers/Cargo.toml >/dev/null 2>&1
HELLO=$PWD/target/release/examples/hello
TLS=$PWD/target/release/examples/tls
PORT=${PORT:-18131}
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
hz=$(getconf CLK_TCK)

# wrk's summary: requests/s and transfer/s (MB/s, as wrk prints it).
summary() { awk '/Requests\/sec/ {r=$2} /Transfer\/sec/ {t=$2} END {print r, t}' "$1"; }

run_cell() { # name url pid -> "req/s MB/s cpu_ms_per_MB"
    local name=$1 url=$2 pid=$3 c0 c1
    c0=$(ticks "$pid")
    taskset -c 1 wrk -t1 -c4 -d"$DUR" "$url" >"$OUT/$name" 2>&1
    c1=$(ticks "$pid")
    read -r rps tps < <(summary "$OUT/$name")
    # Bytes moved: wrk's transfer/s (MB or GB) times the run's seconds.
    python3 - "$rps" "$tps" "$c0" "$c1" "$hz" "$DUR" <<'PY'
import sys, re
rps, tps, c0, c1, hz, dur = sys.argv[1:]
m = re.match(r"([\d.]+)([KMG]?B)", tps)
mb = float(m.group(1)) * {"KB": 1/1024, "MB": 1, "GB": 1024, "B": 1/2**20}[m.group(2)]
secs = float(dur.rstrip("s"))
cpu_ms = (int(c1) - int(c0)) * 1000 / int(hz)
print(f"{float(rps):.1f} {mb:.0f} {cpu_ms / (mb * secs):.3f}")
PY
}

HYPER=${HYPER_BIN:-$PWD/benches/peers/target/release/hyper-hello}
HPORT=$((PORT + 1))
taskset -c 0 "$HELLO" --listen 127.0.0.1:$PORT 2>"$OUT/hello.log" &
H=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.05; done
for n in 1048576 67108864; do curl -s -o /dev/null "http://127.0.0.1:$PORT/file?bytes=$n"; done
Y=
if [ -x "$HYPER" ]; then
    taskset -c 0 "$HYPER" 127.0.0.1:$HPORT 2>"$OUT/hyper.log" &
    Y=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HPORT/" >/dev/null && break; sleep 0.05; done
fi
echo "| body | size | run | req/s | MB/s | server CPU ms per MB |"
echo "|---|---|---|---|---|---|"
for n in 1048576 67108864; do
    size=$(( n >> 20 )) 
    for i in $(seq "$RUNS"); do
        for kind in file stream hyper; do
            pid=$H
            case $kind in
                file) url="http://127.0.0.1:$PORT/file?bytes=$n" ;;
                stream) url="http://127.0.0.1:$PORT/sized?bytes=$n&chunked=1" ;;
                hyper) [ -n "$Y" ] || continue; pid=$Y; url="http://127.0.0.1:$HPORT/file?bytes=$n" ;;
            esac
            read -r rps mbs cpu < <(run_cell "$kind-$n-$i" "$url" $pid)
            echo "| $kind | ${size} MiB | $i | $rps | $mbs | $cpu |"
        done
    done
done
kill -TERM $H; wait $H || true
[ -z "$Y" ] || { kill $Y; wait $Y || true; }

# TLS handshakes: a fresh certificate (openssl), Connection: close.
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 \
    -keyout "$OUT/key.pem" -out "$OUT/cert.pem" >/dev/null 2>&1
taskset -c 0 "$TLS" --listen 127.0.0.1:$PORT --cert "$OUT/cert.pem" --key "$OUT/key.pem" 2>"$OUT/tls.log" &
S=$!
for _ in $(seq 100); do curl -skf "https://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.05; done
echo
echo "| TLS, Connection: close | run | handshakes/s | server CPU µs per handshake |"
echo "|---|---|---|---|"
for i in $(seq "$RUNS"); do
    c0=$(ticks $S)
    taskset -c 1 wrk -t1 -c16 -d"$DUR" -H "Connection: close" "https://127.0.0.1:$PORT/" >"$OUT/tls-$i" 2>&1
    c1=$(ticks $S)
    read -r rps _ < <(summary "$OUT/tls-$i")
    python3 - "$rps" "$c0" "$c1" "$hz" "${DUR%s}" "$i" <<'PY'
import sys
rps, c0, c1, hz, secs, i = sys.argv[1:]
r = float(rps)
cpu_us = (int(c1) - int(c0)) * 1e6 / int(hz)
print(f"| rsa2048 | {i} | {r:.0f} | {cpu_us / (r * float(secs)):.0f} |")
PY
done
grep -h "Socket errors\|Non-2xx" "$OUT"/* || echo "(no socket errors, no non-2xx responses)"
kill -TERM $S; wait $S || true
