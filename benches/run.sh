#!/usr/bin/env bash
# grace vs hyper 1 + tokio (and tiny_http, nginx, Go net/http where
# installed), measured with wrk on loopback.
#
#   benches/install-peers.sh            # once, as root: wrk, nginx, Go peers
#   benches/run.sh                      # RUNS=3 DURATION=10s
#   RUNS=1 DURATION=3s benches/run.sh   # quick look
#   SERVERS="grace hyper" benches/run.sh
#
# Each server runs pinned to CPU 0 (`taskset -c 0`), wrk to CPU 1 with one
# thread. Scenarios: keep-alive with 1, 16, 64 and 256 connections, and
# `Connection: close` with 16. A peer that is not installed or built
# (nginx, benches/peers/go/bin/nethttp) is skipped, and the run says so. The
# report gives every server's median req/s with its ratio to hyper's median
# from the same run. Every cell (one server, one scenario, one run)
# starts a fresh server, waits until it answers, runs `wrk --latency`, records
# req/s, p50, p99, socket errors and non-2xx, notes the CPU time the server
# and wrk used, and stops the server (SIGTERM, wait). Runs are interleaved
# (run 1 of every cell, then run 2, ...) and the server order alternates, so
# drift hits both servers alike. The table shows medians over the runs.
#
# Each cell runs under `flock $LOCK` (default /tmp/grace-cpu.lock), so
# measurements never overlap other CPU-heavy work that takes the same lock;
# the builds run outside it. Do not wrap this whole script in the same flock:
# its cells would wait for the lock forever (set LOCK= to skip locking when
# you already hold it).
#
# Other work on the machine that does not take the lock (builds, say) still
# disturbs a run: each cell notes the CPU that neither the server nor wrk
# used, and a cell where that exceeds MAX_OTHER percent of one CPU is run
# again after 10 s, at most RETRIES times (the last try is kept regardless;
# the raw table shows tries and other CPU).
#
# Environment: RUNS (3), DURATION (10s), LOCK (/tmp/grace-cpu.lock),
# SERVERS ("grace hyper tiny nginx nethttp"), SCENARIOS_ONLY (indices into
# the scenario list, say "2 3 4"),
# MAX_OTHER (10), RETRIES (2), SERVER_CPU (0), CLIENT_CPU (1),
# OUT (benches/results/latest.md); GRACE_BIN and HYPER_BIN replace the two
# servers (say, a build of another branch; the usual builds still run).
# SERVERS may also name grace-pc (grace with --threads per-connection),
# grace-ll (grace with hyper's kernel knobs: --defer-accept-ms 0
# --no-sched-batch, like for like) and grace-pcll (both).
# SERVERS may also name grace-b: grace again with the flags in GRACE_B_ARGS
# (say "--defer-accept-ms 0") and, if set, the binary GRACE_B_BIN (another
# build), interleaved with the others, for an A/B in one run.
set -euo pipefail
export GRACE_B_ARGS="${GRACE_B_ARGS:-}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/benches/run.sh"
GRACE_BIN="${GRACE_BIN:-$ROOT/target/release/examples/hello}"
HYPER_BIN="${HYPER_BIN:-$ROOT/benches/peers/target/release/hyper-hello}"
TINY_BIN="${TINY_BIN:-$ROOT/benches/peers/target/release/tiny-hello}"
NETHTTP_BIN="${NETHTTP_BIN:-$ROOT/benches/peers/go/bin/nethttp}"
NGINX_CONF_IN="$ROOT/benches/peers/nginx/nginx.conf.in"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"

# Scenario name | wrk arguments, separated by ';' (besides --latency, -d and
# the URL).
SCENARIOS=(
    "keep-alive c1|-t1;-c1"
    "keep-alive c16|-t1;-c16"
    "keep-alive c64|-t1;-c64"
    "keep-alive c256|-t1;-c256"
    "close c16|-t1;-c16;-H;Connection: close"
)

# ---------------------------------------------------------------------------
# One cell: `run.sh __cell SERVER PORT DURATION RESULT_FILE WRK_ARGS...`,
# invoked under flock by the main part below. Writes one line of key=value
# pairs to RESULT_FILE and wrk's output next to it.
# ---------------------------------------------------------------------------
cell() {
    local server=$1 port=$2 duration=$3 result=$4
    shift 4
    local log="${result%.res}.server.log" wrk_out="${result%.res}.wrk.txt"
    local url="http://127.0.0.1:$port/"
    local pid
    case $server in
        grace) taskset -c "$SERVER_CPU" "$GRACE_BIN" --listen "127.0.0.1:$port" >"$log" 2>&1 &
            pid=$! ;;
        grace-pc) taskset -c "$SERVER_CPU" "$GRACE_BIN" --listen "127.0.0.1:$port" --threads per-connection >"$log" 2>&1 &
            pid=$! ;;
        grace-ll) taskset -c "$SERVER_CPU" "$GRACE_BIN" --listen "127.0.0.1:$port" --defer-accept-ms 0 --no-sched-batch >"$log" 2>&1 &
            pid=$! ;;
        grace-pcll) taskset -c "$SERVER_CPU" "$GRACE_BIN" --listen "127.0.0.1:$port" --threads per-connection --defer-accept-ms 0 --no-sched-batch >"$log" 2>&1 &
            pid=$! ;;
        grace-b) # shellcheck disable=SC2086 # GRACE_B_ARGS is a list of flags
            taskset -c "$SERVER_CPU" "${GRACE_B_BIN:-$GRACE_BIN}" --listen "127.0.0.1:$port" $GRACE_B_ARGS >"$log" 2>&1 &
            pid=$! ;;
        hyper) taskset -c "$SERVER_CPU" "$HYPER_BIN" "127.0.0.1:$port" >"$log" 2>&1 &
            pid=$! ;;
        tiny) taskset -c "$SERVER_CPU" "$TINY_BIN" "127.0.0.1:$port" >"$log" 2>&1 &
            pid=$! ;;
        nethttp) taskset -c "$SERVER_CPU" "$NETHTTP_BIN" "127.0.0.1:$port" >"$log" 2>&1 &
            pid=$! ;;
        nginx)
            local ndir="${result%.res}.nginx"
            mkdir -p "$ndir"
            sed "s|@DIR@|$ndir|g; s|@PORT@|$port|g" "$NGINX_CONF_IN" >"$ndir/nginx.conf"
            taskset -c "$SERVER_CPU" nginx -p "$ndir" -c "$ndir/nginx.conf" -e "$ndir/error.log" >"$log" 2>&1 &
            pid=$! ;;
        *) echo "unknown server $server" >&2; return 2 ;;
    esac
    stop_server() {
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "  $server (pid $pid) ignored SIGTERM for 10 s: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    }
    # Ready when GET / answers 200 (at most 10 s).
    if ! python3 - "$url" <<'EOF'
import sys, time, urllib.request
end = time.monotonic() + 10
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
            if r.status == 200 and r.read() == b"hello\n":
                sys.exit(0)
    except OSError:
        pass
    if time.monotonic() > end:
        sys.exit(1)
    time.sleep(0.05)
EOF
    then
        echo "  $server did not answer on $url within 10 s; its log:" >&2
        sed 's/^/    /' "$log" >&2
        stop_server
        return 1
    fi
    # CPU time (utime + stime, clock ticks) of the whole server process and
    # its child processes (nginx's worker).
    srv_ticks() {
        local p kids t=0 v
        kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
        for p in $pid $kids; do
            v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
            t=$((t + v))
        done
        echo "$t"
    }
    # Children's CPU time so far (the readiness check; wrk after it runs).
    # `times` must run in this shell, not in a $(...) subshell.
    local tfile="${result%.res}.times"
    kids_secs() {
        times >"$tfile"
        awk 'NR == 2 {
            s = 0
            for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
            printf "%.3f", s }' "$tfile"
    }
    # Busy time of all CPUs (clock ticks), to see other load during the run.
    sys_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
    local t0 k0 s0 t1 k1 s1 y0 y1
    y0=$(sys_ticks)
    s0=$(srv_ticks)
    kids_secs >"$tfile.0"
    k0=$(cat "$tfile.0")
    t0=$(date +%s.%N)
    if ! taskset -c "$CLIENT_CPU" wrk --latency -d "$duration" "$@" "$url" >"$wrk_out" 2>&1; then
        echo "  wrk failed against $server:" >&2
        sed 's/^/    /' "$wrk_out" >&2
        stop_server
        return 1
    fi
    t1=$(date +%s.%N)
    kids_secs >"$tfile.1"
    k1=$(cat "$tfile.1")
    s1=$(srv_ticks)
    y1=$(sys_ticks)
    local alive=1
    kill -0 "$pid" 2>/dev/null || alive=0
    stop_server
    local hz
    hz=$(getconf CLK_TCK)
    python3 - "$wrk_out" "$result" "$t0" "$t1" "$s0" "$s1" "$hz" "$k0" "$k1" "$alive" "$y0" "$y1" <<'EOF'
import re, sys
wrk_out, result, t0, t1, s0, s1, hz, k0, k1, alive, y0, y1 = sys.argv[1:]
text = open(wrk_out).read()
def lat(unit_val):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", unit_val)
    if not m:
        return float("nan")
    mult = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}[m.group(2)]
    return float(m.group(1)) * mult
r = {}
m = re.search(r"Requests/sec:\s+([\d.]+)", text)
r["rps"] = float(m.group(1)) if m else 0.0
m = re.search(r"(\d+) requests in", text)
r["requests"] = int(m.group(1)) if m else 0
for pct in ("50", "99"):
    m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
    r["p" + pct] = lat(m.group(1)) if m else float("nan")
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
for i, k in enumerate(("connect", "read", "write", "timeout")):
    r[k] = int(m.group(i + 1)) if m else 0
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
r["non2xx"] = int(m.group(1)) if m else 0
wall = float(t1) - float(t0)
r["srv_cpu"] = (int(s1) - int(s0)) / int(hz) / wall * 100 if wall > 0 else 0.0
r["wrk_cpu"] = (float(k1) - float(k0)) / wall * 100 if wall > 0 else 0.0
busy = (int(y1) - int(y0)) / int(hz) / wall * 100 if wall > 0 else 0.0
r["other_cpu"] = max(0.0, busy - r["srv_cpu"] - r["wrk_cpu"])
r["alive"] = int(alive)
with open(result, "w") as f:
    f.write(" ".join(f"{k}={v}" for k, v in r.items()) + "\n")
EOF
    [ "$alive" = 1 ] || { echo "  $server died during the run; its log:" >&2; sed 's/^/    /' "$log" >&2; }
}

if [ "${1:-}" = "__cell" ]; then
    shift
    cell "$@"
    exit
fi

# ---------------------------------------------------------------------------
# Main part.
# ---------------------------------------------------------------------------
RUNS="${RUNS:-3}"
DURATION="${DURATION:-10s}"
LOCK="${LOCK-/tmp/grace-cpu.lock}"
OUT="${OUT:-$ROOT/benches/results/latest.md}"
MAX_OTHER="${MAX_OTHER:-10}"
RETRIES="${RETRIES:-2}"
SERVERS_ENV="${SERVERS:-}"

if ! command -v wrk >/dev/null; then
    echo "== installing wrk"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq wrk >/dev/null
fi
for tool in taskset python3; do
    command -v "$tool" >/dev/null || { echo "run.sh needs $tool" >&2; exit 1; }
done
[ -z "$LOCK" ] || command -v flock >/dev/null || { echo "run.sh needs flock (or LOCK=)" >&2; exit 1; }
if [ "$(nproc --all)" -le "$CLIENT_CPU" ] || [ "$(nproc --all)" -le "$SERVER_CPU" ]; then
    echo "need CPUs $SERVER_CPU and $CLIENT_CPU; this machine has $(nproc --all)" >&2
    exit 1
fi

echo "== building (CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1})"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
(cd "$ROOT" && cargo build --release --example hello)
(cd "$ROOT" && cargo build --release --manifest-path benches/peers/Cargo.toml)

# Servers: the optional ones only when installed.
SERVERS=()
for server in ${SERVERS_ENV:-grace hyper tiny nginx nethttp}; do
    case $server in
        nginx) command -v nginx >/dev/null || { echo "== skipping nginx: not installed (benches/install-peers.sh)"; continue; } ;;
        nethttp) [ -x "$NETHTTP_BIN" ] || { echo "== skipping Go net/http: $NETHTTP_BIN not built (benches/install-peers.sh)"; continue; } ;;
    esac
    SERVERS+=("$server")
done
[[ " ${SERVERS[*]} " == *" hyper "* ]] || echo "== note: hyper not in SERVERS: no ratios"
SCEN_IDX=(${SCENARIOS_ONLY:-${!SCENARIOS[@]}})

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK="$(mktemp -d /tmp/grace-bench.XXXXXX)"
echo "== raw wrk output and server logs in $WORK"
total=$((RUNS * ${#SCEN_IDX[@]} * ${#SERVERS[@]}))
n=0
for ((run = 1; run <= RUNS; run++)); do
    for si in "${SCEN_IDX[@]}"; do
        IFS='|' read -r sname sargs <<<"${SCENARIOS[$si]}"
        IFS=';' read -r -a wargs <<<"$sargs"
        # Rotate the server order per scenario and reverse it every other
        # run, so drift (and what one server leaves behind in the kernel,
        # TIME_WAIT sockets say) hits every server alike. (Rotating by run
        # as well would cancel the reversal out for two servers.)
        order=()
        ns=${#SERVERS[@]}
        for ((j = 0; j < ns; j++)); do order+=("${SERVERS[$(((j + si) % ns))]}"); done
        if ((run % 2 == 0)); then
            rev=()
            for ((j = ns - 1; j >= 0; j--)); do rev+=("${order[$j]}"); done
            order=("${rev[@]}")
        fi
        for server in "${order[@]}"; do
            n=$((n + 1))
            res="$WORK/$server.s$si.r$run.res"
            for ((try = 1; ; try++)); do
                port=$(free_port)
                printf '[%d/%d] run %d  %-16s %-7s port %-5s ... ' "$n" "$total" "$run" "$sname" "$server" "$port"
                rm -f "$res"
                if [ -n "$LOCK" ]; then
                    flock "$LOCK" bash "$SELF" __cell "$server" "$port" "$DURATION" "$res" "${wargs[@]}" || true
                else
                    bash "$SELF" __cell "$server" "$port" "$DURATION" "$res" "${wargs[@]}" || true
                fi
                if [ ! -s "$res" ]; then
                    echo "FAILED"
                    break
                fi
                tr ' ' '\n' <"$res" | awk -F= '{ v[$1] = $2 } END {
                    printf "%.0f req/s  p50 %.3f ms  p99 %.3f ms  errors %d  CPU: server %.0f%% wrk %.0f%% other %.0f%%\n",
                        v["rps"], v["p50"], v["p99"],
                        v["connect"] + v["read"] + v["write"] + v["timeout"] + v["non2xx"],
                        v["srv_cpu"], v["wrk_cpu"], v["other_cpu"] }'
                other=$(tr ' ' '\n' <"$res" | awk -F= '$1 == "other_cpu" { printf "%.0f", $2 }')
                sed -i "s/\$/ tries=$try/" "$res"
                if ((other <= MAX_OTHER || try > RETRIES)); then
                    break
                fi
                echo "    disturbed: other processes used ${other}% of a CPU (MAX_OTHER=$MAX_OTHER); again in 10 s"
                sleep 10
            done
        done
    done
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
scen_names=()
scen_args=()
for si in "${SCEN_IDX[@]}"; do
    scen_names+=("$si:${SCENARIOS[$si]%%|*}")
    scen_args+=("${SCENARIOS[$si]#*|}")
done
SERVERS_LIST="${SERVERS[*]}" python3 - "$WORK" "$OUT" "$RUNS" "$DURATION" "$SERVER_CPU" "$CLIENT_CPU" "$ROOT" \
    "${#SCEN_IDX[@]}" "${scen_names[@]}" "${scen_args[@]}" <<'EOF'
import os, platform, shlex, statistics, subprocess, sys, time
work, out, runs, duration, scpu, ccpu, root, nscen = sys.argv[1:9]
nscen = int(nscen)
scen = [x.split(":", 1) for x in sys.argv[9:9 + nscen]]
sidx = [int(a) for a, _ in scen]
names = [b for _, b in scen]
wargs = [shlex.join(a.split(";")) for a in sys.argv[9 + nscen:9 + 2 * nscen]]
runs = int(runs)
servers = os.environ["SERVERS_LIST"].split()
LABEL = {"grace": "grace", "grace-pc": "grace per-connection", "grace-ll": "grace like-for-like", "grace-pcll": "grace per-connection like-for-like", "grace-b": "grace " + os.environ.get("GRACE_B_ARGS", ""), "hyper": "hyper", "tiny": "tiny_http", "nginx": "nginx", "nethttp": "Go net/http"}
ORDER = ["hyper", "grace", "grace-pc", "grace-ll", "grace-pcll", "grace-b", "tiny", "nginx", "nethttp"]
# hyper first: the reference column.
servers.sort(key=lambda x: ORDER.index(x) if x in ORDER else 99)

def load(server, si, run):
    p = os.path.join(work, f"{server}.s{si}.r{run}.res")
    try:
        line = open(p).read().split()
    except OSError:
        return None
    r = {}
    for kv in line:
        k, v = kv.split("=", 1)
        r[k] = float(v)
    return r

def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")

def fmt_lat(ms):
    if ms != ms:
        return "n/a"
    return f"{ms * 1000:.0f} µs" if ms < 1 else f"{ms:.2f} ms"

def cpu_us(r):
    # Server CPU time per request, in µs: server CPU share / request rate.
    return r["srv_cpu"] / 100 / r["rps"] * 1e6 if r["rps"] > 0 else float("nan")

def fmt_us(x):
    return "n/a" if x != x else f"{x:.1f}"

ERR_KEYS = ("connect", "read", "write", "timeout", "non2xx")
def fmt_err(rs):
    tot = {k: int(sum(r[k] for r in rs)) for k in ERR_KEYS}
    parts = [f"{k} {v}" for k, v in tot.items() if v]
    failed = runs - len(rs)
    if failed:
        parts.append(f"{failed} run(s) failed")
    return ", ".join(parts) if parts else "0"

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return "?"

model = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break

head = "| scenario | " + " | ".join(LABEL.get(x, x) for x in servers) + " |"
sep = "|---|" + "---:|" * len(servers)
thr, lat, cost = [head, sep], [head, sep], [head, sep]
peers_only = [x for x in servers if x != "hyper"]
paired = ["| scenario | " + " | ".join(LABEL.get(x, x) for x in peers_only) + " |",
          "|---|" + "---:|" * len(peers_only)]
for si, name in zip(sidx, names):
    rs = {x: [r for r in (load(x, si, k) for k in range(1, runs + 1)) if r] for x in servers}
    hrps = med([r["rps"] for r in rs.get("hyper", [])])
    row_t, row_l, row_c = [], [], []
    for x in servers:
        g = rs[x]
        if not g:
            row_t.append("failed"); row_l.append("failed"); row_c.append("failed")
            continue
        grps = med([r["rps"] for r in g])
        ratio = f" ({grps / hrps:.2f})" if x != "hyper" and hrps == hrps and hrps > 0 else ""
        row_t.append(f"{grps:,.0f}{ratio}")
        row_l.append(f"{fmt_lat(med([r['p50'] for r in g]))} / {fmt_lat(med([r['p99'] for r in g]))}")
        row_c.append(f"{fmt_us(med([cpu_us(r) for r in g]))} µs, wrk {med([r['wrk_cpu'] for r in g]):.0f}%, errors {fmt_err(g)}")
    thr.append(f"| {name} | " + " | ".join(row_t) + " |")
    # Paired: run i of a server against run i of hyper (interleaved, so
    # drift hits both); the median of those ratios, and their spread.
    row_p = []
    for x in servers:
        if x == "hyper":
            continue
        pairs = []
        for k in range(1, runs + 1):
            a, h = load(x, si, k), load("hyper", si, k)
            if a and h and h["rps"] > 0:
                pairs.append(a["rps"] / h["rps"])
        row_p.append(f"{med(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "-")
    paired.append(f"| {name} | " + " | ".join(row_p) + " |")
    lat.append(f"| {name} | " + " | ".join(row_l) + " |")
    cost.append(f"| {name} | " + " | ".join(row_c) + " |")

raw = []
raw.append("| scenario | server | run | req/s | requests | p50 | p99 | connect | read | write | timeout | non-2xx | server CPU | CPU µs/req | wrk CPU | other CPU | tries |")
raw.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for si, name in zip(sidx, names):
    for server in servers:
        for k in range(1, runs + 1):
            r = load(server, si, k)
            if r is None:
                raw.append(f"| {name} | {LABEL.get(server, server)} | {k} | failed | | | | | | | | | | | | | |")
                continue
            raw.append(
                f"| {name} | {LABEL.get(server, server)} | {k} | {r['rps']:,.0f} | {int(r['requests'])} | "
                f"{fmt_lat(r['p50'])} | {fmt_lat(r['p99'])} | {int(r['connect'])} | {int(r['read'])} | "
                f"{int(r['write'])} | {int(r['timeout'])} | {int(r['non2xx'])} | "
                f"{r['srv_cpu']:.0f}% | {fmt_us(cpu_us(r))} | {r['wrk_cpu']:.0f}% | {r['other_cpu']:.0f}% | {int(r.get('tries', 1))} |"
            )

commit = sh(f"git -C {root} rev-parse --short HEAD")
dirty = sh(f"git -C {root} status --porcelain -- src examples Cargo.toml Cargo.lock")
peers = {
    "grace": "grace `examples/hello`",
    "grace-pc": "grace `examples/hello --threads per-connection`",
    "grace-ll": "grace `examples/hello --defer-accept-ms 0 --no-sched-batch` (hyper's kernel knobs)",
    "grace-pcll": "grace `examples/hello --threads per-connection --defer-accept-ms 0 --no-sched-batch`",
    "grace-b": "grace `examples/hello " + os.environ.get("GRACE_B_ARGS", "") + "`",
    "hyper": "hyper `benches/peers` (hyper 1 + hyper-util + tokio multi-thread, 1 worker under taskset)",
    "tiny": "tiny_http 0.12 `benches/peers` tiny-hello (1 recv worker under taskset, plus tiny_http's own connection threads)",
    "nginx": "nginx " + sh("nginx -v 2>&1 | sed 's/.*nginx\\///'") + " (1 worker, `return 200`, access_log off; `benches/peers/nginx/nginx.conf.in`)",
    "nethttp": "Go net/http (" + sh("go version | awk '{print $3}'") + ", GOMAXPROCS 1 under taskset; `benches/peers/go/nethttp`)",
}
machine = [
    f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
    f"- grace commit: {commit}{' (src/examples modified)' if dirty else ''}",
    f"- CPU: {model}; nproc {os.cpu_count()}; kernel {platform.release()}",
    f"- server pinned to CPU {scpu}, wrk (`-t1`) to CPU {ccpu}; {runs} run(s) of {duration} per cell, interleaved",
    f"- {sh('wrk -v 2>&1 | head -1')}; {sh('rustc --version')}",
    "- peers: " + "; ".join(peers.get(x, x) for x in servers),
]
scen_doc = [f"- {n}: `wrk --latency -d {duration} {a} http://127.0.0.1:PORT/`" for n, a in zip(names, wargs)]
doc = (
    ["# grace and its peers: latest run", "", *machine, "", "Scenarios:", *scen_doc, "",
     "## Throughput: median req/s (ratio to hyper's median from the same run)", "", *thr, "",
     "## Paired ratios to hyper: median of (run i / hyper's run i), and their spread", "", *paired, "",
     "## Latency: median p50 / p99", "", *lat, "",
     "## Server CPU per request, wrk CPU, errors", "", *cost, "",
     "Errors are totals over the runs (wrk socket errors and non-2xx responses).",
     "Server CPU: CPU time the server (with its child processes) used during the wrk run / wall time;",
     "CPU µs/req = that time / requests served, the server's cost per request whoever is the bottleneck.",
     "wrk CPU likewise for wrk (one thread on one CPU): near 100% means the client, not the server,",
     "limits the rate, and req/s understates that server. Other CPU: busy time of all CPUs minus",
     "server and wrk (other processes, interrupts); high values mean the run was disturbed.", "",
     "## Every run", "", *raw, ""]
)
with open(out, "w") as f:
    f.write("\n".join(doc))
print()
print("\n".join(thr))
print()
print("\n".join(paired))
print()
print("\n".join(lat))
print()
print(f"raw results: {out}")
EOF
