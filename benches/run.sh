#!/usr/bin/env bash
# grace against the servers a user would pick instead, measured with wrk on
# loopback: hyper 1 + tokio, astra (sync handlers on hyper), tiny_http, and
# nginx and Go net/http where installed. Both of grace's thread shapes, each
# with its own kernel knobs and with hyper's (like for like).
#
#   sudo benches/install-peers.sh       # once: wrk, nginx, Go peers
#   benches/run.sh                      # everything: RUNS=8 DURATION=3s, about 70 min
#   RUNS=1 DURATION=1s benches/run.sh   # a quick look (about 10 min)
#   BENCH_GROUPS="hello blocking" SERVERS="grace hyper" benches/run.sh
#
# Scenario groups (BENCH_GROUPS, default all five), each with its own servers:
# - hello: `GET /` keep-alive with 1, 16, 64 and 256 connections, and
#   `Connection: close` with 16;
# - blocking: `GET /sleep?ms=2` (a handler that blocks) and `GET /work?us=200`
#   (one that computes) at 64, 256 and 1,024 connections. hyper runs both with
#   `spawn_blocking`, as a tokio program runs blocking work;
# - many: `GET /` keep-alive with 1,000 and 4,000 connections;
# - idle: `GET /` keep-alive c64 while 10,000 idle keep-alive connections are
#   held open (benches/idle.py), against the hello group's c64 of the same run;
# - bodies: `POST /echo` of 64 KiB (c16), and `GET /bytes?n=1048576`, a 1 MiB
#   body from memory (c4).
#
# Servers: grace (examples/hello, its defaults: TCP_DEFER_ACCEPT and
# SCHED_BATCH), grace-pc (--threads per-connection), grace-ll and grace-pcll
# (the two shapes with hyper's kernel knobs: --defer-accept-ms 0
# --no-sched-batch), hyper, astra (its default worker cap, 15 per CPU),
# astra-w (the cap raised to cover every connection of the cell), tiny,
# nginx, nethttp, and grace-b (grace again with GRACE_B_ARGS and, if set, the
# binary GRACE_B_BIN: an A/B of two builds or flags in one run; the report's
# A/B table pairs it with grace, or with the server AB_A names, such as
# grace-ll when GRACE_B_ARGS are hyper's knobs too). SERVERS replaces every
# group's list.
#
# Each server runs pinned to CPU 0 (`taskset -c 0`), wrk to CPU 1 with one
# thread. Every cell (one server, one scenario, one run) starts a fresh
# server, waits until it answers, runs `wrk --latency`, records req/s, p50,
# p99, socket errors and non-2xx, the CPU time the server and wrk used, and
# how many connections got no byte from the server over the middle 40% of the
# run (benches/stalled.py: wrk shows no error for a connection a server never
# answers), then stops the server (SIGTERM, wait). Runs are interleaved (run 1
# of every cell, then run 2, ...) and the server order rotates and reverses,
# so drift hits every server alike. benches/report.py then writes the report:
# medians of paired per-run ratios (server run i / hyper run i) with their
# spread, latency, CPU per request, the idle-load ratio, every target of the
# performance work with its figure, a plot, and every run.
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
# Environment: RUNS (8), DURATION (3s), BENCH_GROUPS, SERVERS, SCENARIOS_ONLY
# (indices into the scenario list below, say "2 3 4"), LOCK
# (/tmp/grace-cpu.lock), MAX_OTHER (10), RETRIES (2), SERVER_CPU (0),
# CLIENT_CPU (1), OUT (benches/results/latest.md; the plot goes beside it),
# GRACE_BIN, HYPER_BIN, ASTRA_BIN, TINY_BIN (other builds of the servers).
set -euo pipefail
export GRACE_B_ARGS="${GRACE_B_ARGS:-}" AB_A="${AB_A:-grace}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/benches/run.sh"
GRACE_BIN="${GRACE_BIN:-$ROOT/target/release/examples/hello}"
HYPER_BIN="${HYPER_BIN:-$ROOT/benches/peers/target/release/hyper-hello}"
ASTRA_BIN="${ASTRA_BIN:-$ROOT/benches/peers/target/release/astra-hello}"
TINY_BIN="${TINY_BIN:-$ROOT/benches/peers/target/release/tiny-hello}"
NETHTTP_BIN="${NETHTTP_BIN:-$ROOT/benches/peers/go/bin/nethttp}"
NGINX_CONF_IN="$ROOT/benches/peers/nginx/nginx.conf.in"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"

# Scenario name | path | wrk arguments (besides --latency, -d and the URL),
# separated by ';' | group | idle connections held during the run.
SCENARIOS=(
    "keep-alive c1|/|-t1;-c1|hello|0"
    "keep-alive c16|/|-t1;-c16|hello|0"
    "keep-alive c64|/|-t1;-c64|hello|0"
    "keep-alive c256|/|-t1;-c256|hello|0"
    "close c16|/|-t1;-c16;-H;Connection: close|hello|0"
    "sleep 2 ms c64|/sleep?ms=2|-t1;-c64|blocking|0"
    "sleep 2 ms c256|/sleep?ms=2|-t1;-c256|blocking|0"
    "sleep 2 ms c1024|/sleep?ms=2|-t1;-c1024|blocking|0"
    "work 200 us c64|/work?us=200|-t1;-c64|blocking|0"
    "work 200 us c256|/work?us=200|-t1;-c256|blocking|0"
    "work 200 us c1024|/work?us=200|-t1;-c1024|blocking|0"
    "keep-alive c1000|/|-t1;-c1000|many|0"
    "keep-alive c4000|/|-t1;-c4000|many|0"
    "c64 + 10k idle|/|-t1;-c64|idle|10000"
    "POST 64 KiB echo c16|/echo|-t1;-c16;-s;$ROOT/benches/post64k.lua|bodies|0"
    "1 MiB body c4|/bytes?n=1048576|-t1;-c4|bodies|0"
)
# Each group's servers (SERVERS replaces them all).
declare -A GROUP_SERVERS=(
    [hello]="hyper grace grace-pc grace-ll grace-pcll astra astra-w tiny nginx nethttp"
    [blocking]="hyper grace grace-ll grace-pcll astra-w"
    [many]="hyper grace grace-pc grace-ll astra-w"
    [idle]="hyper grace grace-pc"
    [bodies]="hyper grace grace-pc astra-w tiny"
)

# ---------------------------------------------------------------------------
# One cell: `run.sh __cell SERVER PORT DURATION RESULT_FILE PATH IDLE
# WRK_ARGS...`, invoked under flock by the main part below. Writes one line of
# key=value pairs to RESULT_FILE and wrk's output next to it.
# ---------------------------------------------------------------------------
cell() {
    local server=$1 port=$2 duration=$3 result=$4 path=$5 idle=$6
    shift 6
    local log="${result%.res}.server.log" wrk_out="${result%.res}.wrk.txt"
    local url="http://127.0.0.1:$port"
    local pid conns=0 a
    for a in "$@"; do
        case $a in -c*) conns=${a#-c} ;; esac
    done
    # Thousands of connections: every process here may use all the fds it may.
    ulimit -n "$(ulimit -Hn)"
    local base=(taskset -c "$SERVER_CPU") grace_bin=$GRACE_BIN flags=()
    local ll=(--defer-accept-ms 0 --no-sched-batch) pc=(--threads per-connection)
    case $server in
        grace) ;;
        grace-pc) flags=("${pc[@]}") ;;
        grace-ll) flags=("${ll[@]}") ;;
        grace-pcll) flags=("${pc[@]}" "${ll[@]}") ;;
        # shellcheck disable=SC2206 # GRACE_B_ARGS is a list of flags
        grace-b) grace_bin=${GRACE_B_BIN:-$GRACE_BIN} flags=($GRACE_B_ARGS) ;;
    esac
    case $server in
        grace*) "${base[@]}" "$grace_bin" --listen "127.0.0.1:$port" "${flags[@]}" >"$log" 2>&1 & pid=$! ;;
        hyper) "${base[@]}" "$HYPER_BIN" "127.0.0.1:$port" >"$log" 2>&1 & pid=$! ;;
        astra) "${base[@]}" "$ASTRA_BIN" "127.0.0.1:$port" >"$log" 2>&1 & pid=$! ;;
        astra-w) "${base[@]}" "$ASTRA_BIN" "127.0.0.1:$port" $((conns + idle + 64)) >"$log" 2>&1 & pid=$! ;;
        tiny) "${base[@]}" "$TINY_BIN" "127.0.0.1:$port" >"$log" 2>&1 & pid=$! ;;
        nethttp) "${base[@]}" "$NETHTTP_BIN" "127.0.0.1:$port" >"$log" 2>&1 & pid=$! ;;
        nginx)
            local ndir="${result%.res}.nginx"
            mkdir -p "$ndir"
            sed "s|@DIR@|$ndir|g; s|@PORT@|$port|g" "$NGINX_CONF_IN" >"$ndir/nginx.conf"
            "${base[@]}" nginx -p "$ndir" -c "$ndir/nginx.conf" -e "$ndir/error.log" >"$log" 2>&1 &
            pid=$! ;;
        *) echo "unknown server $server" >&2; return 2 ;;
    esac
    local idle_pid="" idle_file="${result%.res}.idle"
    # The idle connections' holder: SIGTERM makes it note how many are still
    # open (`alive=`) and exit.
    stop_idle() {
        [ -n "$idle_pid" ] || return 0
        kill -TERM "$idle_pid" 2>/dev/null || true
        wait "$idle_pid" 2>/dev/null || true
        idle_pid=""
    }
    # `field KEY FILE`: the number after KEY= in FILE (empty if none).
    field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" "$2" 2>/dev/null | head -1; }
    stop_server() {
        stop_idle
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
    # Ready when GET / answers 200 (at most 10 s). A plain HTTP/1.1 request,
    # without `Connection: close` (astra 0.4 never answers one).
    ready() {
        local i
        for ((i = 0; i < 100; i++)); do
            python3 "$ROOT/benches/count_load.py" "$port" 1 1 / 1 >/dev/null 2>&1 && return 0
            sleep 0.1
        done
        return 1
    }
    if ! ready
    then
        echo "  $server did not answer on $url/ within 10 s; its log:" >&2
        sed 's/^/    /' "$log" >&2
        stop_server
        return 1
    fi
    # Idle connections first: each has had one answer and now waits
    # (at most 150 s to open them all).
    local idle_ready=0 idle_failed=0 idle_alive=0 i
    if [ "$idle" -gt 0 ]; then
        rm -f "$idle_file"
        taskset -c "$CLIENT_CPU" python3 "$ROOT/benches/idle.py" "$port" "$idle" "$idle_file" &
        idle_pid=$!
        for ((i = 0; i < 1500; i++)); do
            [ -s "$idle_file" ] && break
            kill -0 "$idle_pid" 2>/dev/null || break
            sleep 0.1
        done
        idle_ready=$(field ready "$idle_file")
        idle_failed=$(field failed "$idle_file")
        idle_ready=${idle_ready:-0} idle_failed=${idle_failed:-$idle}
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
    # Busy time of all CPUs (clock ticks), to see other load during the run.
    sys_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
    # CPU time of this shell's waited-for children (wrk and the sampler once
    # they end). `times` must run in this shell, not in a $(...) subshell.
    local tfile="${result%.res}.times"
    kids_secs() {
        times >"$tfile"
        awk 'NR == 2 {
            s = 0
            for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
            printf "%.3f", s }' "$tfile"
    }
    local t0 s0 t1 s1 y0 y1 k0 k1 wpid spid secs stalled_file="${result%.res}.stalled"
    secs=${duration%s}
    kids_secs >"$tfile.0"
    k0=$(cat "$tfile.0")
    y0=$(sys_ticks)
    s0=$(srv_ticks)
    t0=$(date +%s.%N)
    taskset -c "$CLIENT_CPU" wrk --latency -d "$duration" "$@" "$url$path" >"$wrk_out" 2>&1 &
    wpid=$!
    # Connections the server leaves unanswered over the middle 40% of the run.
    taskset -c "$CLIENT_CPU" python3 "$ROOT/benches/stalled.py" "$port" \
        "$(awk -v d="$secs" 'BEGIN { print d * 0.3 }')" "$(awk -v d="$secs" 'BEGIN { print d * 0.4 }')" \
        "$stalled_file" &
    spid=$!
    local wrk_rc=0
    wait "$wpid" || wrk_rc=$?
    t1=$(date +%s.%N)
    s1=$(srv_ticks)
    y1=$(sys_ticks)
    wait "$spid" 2>/dev/null || true
    kids_secs >"$tfile.1"
    k1=$(cat "$tfile.1")
    if [ "$wrk_rc" -ne 0 ]; then
        echo "  wrk failed against $server:" >&2
        sed 's/^/    /' "$wrk_out" >&2
        stop_server
        return 1
    fi
    local alive=1
    kill -0 "$pid" 2>/dev/null || alive=0
    if [ -n "$idle_pid" ]; then
        stop_idle
        idle_alive=$(field alive "$idle_file")
        idle_alive=${idle_alive:-0}
    fi
    stop_server
    local hz stalled conns_seen sampler_cpu
    hz=$(getconf CLK_TCK)
    sampler_cpu=$(field cpu "$stalled_file")
    stalled=$(field stalled "$stalled_file")
    conns_seen=$(field conns "$stalled_file")
    python3 - "$wrk_out" "$result" "$t0" "$t1" "$s0" "$s1" "$hz" "$k0" "$k1" "$alive" "$y0" "$y1" \
        "${stalled:-nan}" "${conns_seen:-nan}" "$idle_ready" "$idle_failed" "$idle_alive" "${sampler_cpu:-0}" <<'EOF'
import re, sys
(wrk_out, result, t0, t1, s0, s1, hz, k0, k1, alive, y0, y1,
 stalled, conns_seen, idle_ready, idle_failed, idle_alive, sampler_cpu) = sys.argv[1:]
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
hz = int(hz)
r["srv_cpu"] = (int(s1) - int(s0)) / hz / wall * 100 if wall > 0 else 0.0
# The children's CPU time holds wrk's and the sampler's; the sampler
# reports its own, which is taken out (it is neither wrk nor other load).
sampler = float(sampler_cpu)
r["wrk_cpu"] = max(0.0, float(k1) - float(k0) - sampler) / wall * 100 if wall > 0 else 0.0
busy = (int(y1) - int(y0)) / hz / wall * 100 if wall > 0 else 0.0
r["other_cpu"] = max(0.0, busy - r["srv_cpu"] - r["wrk_cpu"] - sampler / wall * 100)
r["alive"] = int(alive)
r["stalled"] = float(stalled)
r["conns_seen"] = float(conns_seen)
r["idle_ready"] = int(idle_ready)
r["idle_failed"] = int(idle_failed)
r["idle_alive"] = int(idle_alive)
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
RUNS="${RUNS:-8}"
DURATION="${DURATION:-3s}"
LOCK="${LOCK-/tmp/grace-cpu.lock}"
OUT="${OUT:-$ROOT/benches/results/latest.md}"
MAX_OTHER="${MAX_OTHER:-10}"
RETRIES="${RETRIES:-2}"
SERVERS_ENV="${SERVERS:-}"
GROUPS_ENV="${BENCH_GROUPS:-hello blocking many idle bodies}"

if ! command -v wrk >/dev/null; then
    echo "== installing wrk"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq wrk >/dev/null
fi
for tool in taskset python3 ss awk; do
    command -v "$tool" >/dev/null || { echo "run.sh needs $tool" >&2; exit 1; }
done
[ -z "$LOCK" ] || command -v flock >/dev/null || { echo "run.sh needs flock (or LOCK=)" >&2; exit 1; }
if [ "$(nproc --all)" -le "$CLIENT_CPU" ] || [ "$(nproc --all)" -le "$SERVER_CPU" ]; then
    echo "need CPUs $SERVER_CPU and $CLIENT_CPU; this machine has $(nproc --all)" >&2
    exit 1
fi
[[ "$DURATION" =~ ^[0-9]+s$ ]] || { echo "DURATION must be whole seconds, say 3s (not $DURATION)" >&2; exit 1; }

echo "== building (CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1})"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
(cd "$ROOT" && cargo build --release --example hello)
(cd "$ROOT" && cargo build --release --manifest-path benches/peers/Cargo.toml)

# A server is skipped (and the run says so) when it is not installed.
installed() {
    case $1 in
        nginx) command -v nginx >/dev/null ;;
        nethttp) [ -x "$NETHTTP_BIN" ] ;;
        *) true ;;
    esac
}
for server in nginx nethttp; do
    installed "$server" || echo "== skipping $server: not installed (benches/install-peers.sh)"
done

# The cells of one run: scenario index and its servers.
SCEN_IDX=()
declare -A SCEN_SERVERS=()
for si in ${SCENARIOS_ONLY:-${!SCENARIOS[@]}}; do
    IFS='|' read -r _ _ _ group _ <<<"${SCENARIOS[$si]}"
    [[ " $GROUPS_ENV " == *" $group "* ]] || continue
    list=()
    for server in ${SERVERS_ENV:-${GROUP_SERVERS[$group]}}; do
        installed "$server" && list+=("$server")
    done
    [ ${#list[@]} -gt 0 ] || continue
    SCEN_IDX+=("$si")
    SCEN_SERVERS[$si]="${list[*]}"
done
[ ${#SCEN_IDX[@]} -gt 0 ] || { echo "no scenario left (BENCH_GROUPS=$GROUPS_ENV SCENARIOS_ONLY=${SCENARIOS_ONLY:-})" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK="$(mktemp -d /tmp/grace-bench.XXXXXX)"
echo "== raw wrk output and server logs in $WORK"
# What report.py needs to know of each scenario.
for si in "${SCEN_IDX[@]}"; do
    echo "$si|${SCENARIOS[$si]}|${SCEN_SERVERS[$si]}"
done >"$WORK/scenarios.txt"
per_run=0
for si in "${SCEN_IDX[@]}"; do
    read -r -a list <<<"${SCEN_SERVERS[$si]}"
    per_run=$((per_run + ${#list[@]}))
done
total=$((RUNS * per_run))
echo "== $total cells of $DURATION (about $((total * (${DURATION%s} + 2) / 60)) min)"
n=0
for ((run = 1; run <= RUNS; run++)); do
    for si in "${SCEN_IDX[@]}"; do
        IFS='|' read -r sname spath sargs _ sidle <<<"${SCENARIOS[$si]}"
        IFS=';' read -r -a wargs <<<"$sargs"
        read -r -a servers <<<"${SCEN_SERVERS[$si]}"
        # Rotate the server order per scenario and reverse it every other
        # run, so drift (and what one server leaves behind in the kernel,
        # TIME_WAIT sockets say) hits every server alike. (Rotating by run
        # as well would cancel the reversal out for two servers.)
        order=()
        ns=${#servers[@]}
        for ((j = 0; j < ns; j++)); do order+=("${servers[$(((j + si) % ns))]}"); done
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
                printf '[%d/%d] run %d  %-20s %-10s port %-5s ... ' "$n" "$total" "$run" "$sname" "$server" "$port"
                rm -f "$res"
                cmd=(bash "$SELF" __cell "$server" "$port" "$DURATION" "$res" "$spath" "$sidle" "${wargs[@]}")
                if [ -n "$LOCK" ]; then
                    flock "$LOCK" "${cmd[@]}" || true
                else
                    "${cmd[@]}" || true
                fi
                if [ ! -s "$res" ]; then
                    echo "FAILED"
                    break
                fi
                tr ' ' '\n' <"$res" | awk -F= '{ v[$1] = $2 } END {
                    printf "%.0f req/s  p50 %.3f ms  p99 %.3f ms  errors %d  stalled %s  CPU: server %.0f%% wrk %.0f%% other %.0f%%",
                        v["rps"], v["p50"], v["p99"],
                        v["connect"] + v["read"] + v["write"] + v["timeout"] + v["non2xx"], v["stalled"],
                        v["srv_cpu"], v["wrk_cpu"], v["other_cpu"]
                    if (v["idle_ready"] + v["idle_failed"] > 0)
                        printf "  idle: %d held, %d failed, %d alive at the end", v["idle_ready"], v["idle_failed"], v["idle_alive"]
                    printf "\n" }'
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

python3 "$ROOT/benches/report.py" "$WORK" "$OUT" "$RUNS" "$DURATION" "$SERVER_CPU" "$CLIENT_CPU" "$ROOT"
