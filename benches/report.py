#!/usr/bin/env python3
"""The report of benches/run.sh: tables, targets, plots and every run.

    report.py WORK OUT RUNS DURATION SERVER_CPU CLIENT_CPU ROOT

WORK holds run.sh's cells (`SERVER.sS.rR.res`, one line of key=value pairs
each) and `scenarios.txt` (`index|name|path|wrk args|group|idle|servers`).
Writes OUT (markdown) and two SVG plots beside it (`<stem>-connections.svg`,
`<stem>-blocking.svg`), and prints the main tables.

Figures are medians over the runs. A paired ratio is server X's run i over
server Y's run i of the same cell: the two ran minutes apart at most, in an
order that alternates, so machine drift cancels out of the ratio; the report
gives the median of the per-run ratios and their range (min-max), the run's
own spread.
"""
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

work, out, runs, duration, scpu, ccpu, root = sys.argv[1:8]
runs = int(runs)

LABEL = {
    "grace": "grace", "grace-pc": "grace per-connection",
    "grace-ll": "grace, hyper's knobs", "grace-pcll": "grace per-connection, hyper's knobs",
    "grace-b": ("grace-b " + os.environ.get("GRACE_B_ARGS", "")
                + (f" ({os.path.basename(os.environ['GRACE_B_BIN'])})" if os.environ.get("GRACE_B_BIN") else "")).strip(),
    "hyper": "hyper", "astra": "astra (default cap)", "astra-w": "astra (cap raised)",
    "tiny": "tiny_http", "nginx": "nginx", "nethttp": "Go net/http",
}
ORDER = ["hyper", "grace", "grace-pc", "grace-ll", "grace-pcll", "grace-b",
         "astra", "astra-w", "tiny", "nginx", "nethttp"]
LIKE = {"grace-ll", "grace-pcll"}
GROUP_TITLE = {
    "hello": "Hello world (`GET /`)",
    "blocking": "Blocking handlers: `/sleep?ms=2` (blocks) and `/work?us=200` (computes)",
    "many": "Many connections (`GET /`, keep-alive)",
    "idle": "Idle load plus work",
    "bodies": "Bodies",
}

# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------
scenarios = []  # dicts: si, name, path, args, group, idle, servers
for line in open(os.path.join(work, "scenarios.txt")):
    parts = line.rstrip("\n").split("|")
    if len(parts) < 7:
        continue
    si, name, path, args, group, idle, servers = parts[:7]
    servers = sorted(servers.split(), key=lambda x: ORDER.index(x) if x in ORDER else 99)
    scenarios.append(dict(si=int(si), name=name, path=path, args=args.split(";"),
                          group=group, idle=int(idle), servers=servers))
by_name = {s["name"]: s for s in scenarios}


def load(server, si, run):
    p = os.path.join(work, f"{server}.s{si}.r{run}.res")
    try:
        words = open(p).read().split()
    except OSError:
        return None
    r = {}
    for kv in words:
        k, v = kv.split("=", 1)
        r[k] = float(v)
    return r


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def cpu_us(r):
    """Server CPU time per request, in µs."""
    return r["srv_cpu"] / 100 / r["rps"] * 1e6 if r["rps"] > 0 else float("nan")


METRIC = {"rps": lambda r: r["rps"], "p50": lambda r: r["p50"], "p99": lambda r: r["p99"],
          "cpu": cpu_us}


def runs_of(server, sc):
    return [r for r in (load(server, sc["si"], k) for k in range(1, runs + 1)) if r]


def median_of(server, sc, metric="rps"):
    return med([METRIC[metric](r) for r in runs_of(server, sc)])


def paired(x, y, sc_x, metric="rps", sc_y=None):
    """Per-run ratios of x's metric to y's (y in scenario sc_y, default sc_x)."""
    sc_y = sc_y or sc_x
    out = []
    for k in range(1, runs + 1):
        a, b = load(x, sc_x["si"], k), load(y, sc_y["si"], k)
        if a and b:
            va, vb = METRIC[metric](a), METRIC[metric](b)
            if va == va and vb == vb and vb > 0:
                out.append(va / vb)
    return out


def fmt_pair(ps):
    if not ps:
        return "-"
    return f"{med(ps):.2f} ({min(ps):.2f}-{max(ps):.2f})"


def fmt_lat(ms):
    if ms != ms:
        return "n/a"
    return f"{ms * 1000:.0f} µs" if ms < 1 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_num(x):
    return "n/a" if x != x else f"{x:,.0f}"


ERR_KEYS = ("connect", "read", "write", "timeout", "non2xx")


def fmt_err(rs):
    tot = {k: int(sum(r[k] for r in rs)) for k in ERR_KEYS}
    parts = [f"{k} {v}" for k, v in tot.items() if v]
    if runs - len(rs):
        parts.append(f"{runs - len(rs)} run(s) failed")
    return ", ".join(parts) if parts else "0"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return "?"


def table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


# ---------------------------------------------------------------------------
# Tables per group.
# ---------------------------------------------------------------------------
doc_groups = []
printed = []
groups = []
for sc in scenarios:
    if sc["group"] not in groups:
        groups.append(sc["group"])
for g in groups:
    scs = [s for s in scenarios if s["group"] == g]
    servers = []
    for s in scs:
        for x in s["servers"]:
            if x not in servers:
                servers.append(x)
    servers.sort(key=lambda x: ORDER.index(x) if x in ORDER else 99)
    own = [x for x in servers if x not in LIKE]
    like = [x for x in servers if x in LIKE or x == "hyper"]
    has_hyper = "hyper" in servers
    sec = [f"## {GROUP_TITLE.get(g, g)}", ""]

    def grid(cols, cell):
        """A row per scenario: "-" where a server did not run, else cell(x, s)."""
        return [[s["name"]] + ["-" if x not in s["servers"] else cell(x, s) for x in cols]
                for s in scs]

    def vs_hyper(x, s, metric):
        if x != "hyper" and has_hyper and "hyper" in s["servers"]:
            return fmt_pair(paired(x, "hyper", s, metric))
        return None

    def thr_cell(x, s):
        p = vs_hyper(x, s, "rps")
        return fmt_num(median_of(x, s)) + (f" · **{p}**" if p else "")

    def cpu_cell(x, s):
        c = median_of(x, s, "cpu")
        p = vs_hyper(x, s, "cpu")
        return ("n/a" if c != c else f"{c:.1f}") + (f" ({p})" if p else "")

    any_stall = [False]

    def stall_cell(x, s):
        rs = runs_of(x, s)
        # Idle connections held on purpose get nothing: they are not counted.
        st = med([max(0.0, r.get("stalled", float("nan")) - r.get("idle_ready", 0)) for r in rs])
        seen = med([r.get("conns_seen", float("nan")) - r.get("idle_ready", 0) for r in rs])
        any_stall[0] |= st == st and st > 0
        return f"{fmt_num(st)} of {fmt_num(seen)}; errors {fmt_err(rs)}"

    heads = ["scenario"] + [LABEL.get(x, x) for x in servers]
    sec += ["Each server with its own defaults: median req/s · **median of paired ratios to hyper "
            "(their range)**", ""]
    sec += table(["scenario"] + [LABEL.get(x, x) for x in own], grid(own, thr_cell)) + [""]
    if len(like) > 1:
        sec += ["Like for like: grace with hyper's kernel knobs (`--defer-accept-ms 0 "
                "--no-sched-batch`: no TCP_DEFER_ACCEPT, no SCHED_BATCH)", ""]
        sec += table(["scenario"] + [LABEL.get(x, x) for x in like], grid(like, thr_cell)) + [""]
    sec += ["Latency: median p50 / p99", ""]
    sec += table(heads, grid(servers, lambda x, s: f"{fmt_lat(median_of(x, s, 'p50'))} / "
                                                   f"{fmt_lat(median_of(x, s, 'p99'))}")) + [""]
    sec += ["Server CPU per request, µs: median (median of paired ratios to hyper's, their range)", ""]
    sec += table(heads, grid(servers, cpu_cell)) + [""]
    rows = grid(servers, stall_cell)
    sec += ["Unanswered connections (median: connections the server sent nothing to over the "
            "middle 40% of the run, of those open) and wrk's errors (totals)"
            + ("" if any_stall[0] else ": none unanswered in this group"), ""]
    sec += table(heads, rows) + [""]
    doc_groups += sec
    printed += sec

# ---------------------------------------------------------------------------
# Idle load against the same run's plain c64.
# ---------------------------------------------------------------------------
idle_sec = []
base_c64 = by_name.get("keep-alive c64")
for s in scenarios:
    if s["idle"] <= 0:
        continue
    rows = []
    for x in s["servers"]:
        rs = runs_of(x, s)
        held = med([r["idle_ready"] for r in rs])
        alive = med([r["idle_alive"] for r in rs])
        failed = sum(r["idle_failed"] for r in rs)
        if base_c64 and x in base_c64["servers"]:
            ratio = fmt_pair(paired(x, x, s, "rps", base_c64))
            base = fmt_num(median_of(x, base_c64))
        else:
            ratio, base = "-", "-"
        rows.append([LABEL.get(x, x), base, fmt_num(median_of(x, s)), ratio,
                     f"{fmt_num(held)} held, {fmt_num(alive)} open at the end, {failed:.0f} failed"])
    idle_sec += [f"### {s['name']}: c64 throughput with {s['idle']:,} idle keep-alive connections held", ""]
    idle_sec += table(["server", "c64 alone (req/s)", f"c64 + {s['idle']:,} idle (req/s)",
                       "paired ratio (range)", "idle connections (median per run)"], rows) + [""]
if idle_sec:
    doc_groups += idle_sec
    printed += idle_sec

# ---------------------------------------------------------------------------
# Targets.
# ---------------------------------------------------------------------------
targets = []


def target(what, figure, ok):
    state = "n/a" if ok is None else ("met" if ok else "**not met**")
    targets.append([what, figure, state])


def best_like(sc, y="hyper"):
    """The better of grace's two shapes with hyper's knobs, against y."""
    best = None
    for x in ("grace-ll", "grace-pcll"):
        if x in sc["servers"] and y in sc["servers"]:
            ps = paired(x, y, sc)
            if ps and (best is None or med(ps) > med(best[1])):
                best = (x, ps)
    return best


for name in ("keep-alive c1", "keep-alive c16", "keep-alive c64", "keep-alive c256", "close c16"):
    sc = by_name.get(name)
    if not sc:
        continue
    b = best_like(sc)
    if b:
        target(f"like for like, {name}: the better shape ≥ 1.0x hyper",
               f"{LABEL[b[0]]}: {fmt_pair(b[1])}", med(b[1]) >= 1.0)
for name in ("keep-alive c1", "keep-alive c16", "keep-alive c64", "keep-alive c256", "close c16"):
    sc = by_name.get(name)
    if not sc or "grace" not in sc["servers"] or "hyper" not in sc["servers"]:
        continue
    ps = paired("grace", "hyper", sc)
    if ps:
        half = (max(ps) - min(ps)) / 2
        target(f"default shape, {name}: loses to hyper by no more than the run's spread "
               f"(1 - median ≤ half the range)",
               f"{fmt_pair(ps)}; loss {max(0.0, 1 - med(ps)):.2f}, half range {half:.2f}",
               1 - med(ps) <= half)
for sc in scenarios:
    if not sc["name"].startswith("keep-alive"):
        continue
    if "grace" not in sc["servers"] or "hyper" not in sc["servers"]:
        continue
    g, h = median_of("grace", sc, "cpu"), median_of("hyper", sc, "cpu")
    ps = paired("grace", "hyper", sc, "cpu")
    target(f"server CPU per request, {sc['name']}: grace ≤ hyper (paired ratio ≤ 1.0)",
           f"{g:.1f} µs against {h:.1f} µs; paired {fmt_pair(ps)}", med(ps) <= 1.0 if ps else None)
for prefix, want in (("sleep 2 ms", 1.5), ("work 200 us", 1.0)):
    for sc in scenarios:
        if not sc["name"].startswith(prefix):
            continue
        if prefix == "sleep 2 ms" and sc["name"].endswith("c64"):
            continue
        for y in ("hyper", "astra-w"):
            b = best_like(sc, y)
            if b:
                target(f"{sc['name']}, like for like: the better shape ≥ {want}x {LABEL[y]}",
                       f"{LABEL[b[0]]}: {fmt_pair(b[1])}", med(b[1]) >= want)
sc = by_name.get("keep-alive c1000")
if sc and "grace" in sc["servers"] and "hyper" in sc["servers"]:
    ps99 = paired("grace", "hyper", sc, "p99")
    target("keep-alive c1000: p99 ≤ 0.5x hyper's",
           f"{fmt_pair(ps99)} ({fmt_lat(median_of('grace', sc, 'p99'))} against "
           f"{fmt_lat(median_of('hyper', sc, 'p99'))})", med(ps99) <= 0.5 if ps99 else None)
    ps = paired("grace", "hyper", sc)
    target("keep-alive c1000: throughput ≥ 0.95x hyper", fmt_pair(ps), med(ps) >= 0.95 if ps else None)
for s in scenarios:
    if s["idle"] > 0 and base_c64:
        for x in ("grace", "grace-pc"):
            if x in s["servers"] and x in base_c64["servers"]:
                ps = paired(x, x, s, "rps", base_c64)
                target(f"{LABEL[x]}: c64 with {s['idle']:,} idle ≥ 0.9x c64 alone", fmt_pair(ps),
                       med(ps) >= 0.9 if ps else None)
# The A side of the A/B: grace, or AB_A (grace-ll when grace-b runs with
# hyper's knobs too).
AB_A = os.environ.get("AB_A", "grace")
ab = []
for sc in scenarios:
    if AB_A in sc["servers"] and "grace-b" in sc["servers"]:
        ab.append([sc["name"], fmt_pair(paired(AB_A, "grace-b", sc)),
                   fmt_pair(paired(AB_A, "grace-b", sc, "cpu"))])
ab_sec = ([f"## A/B: {AB_A} against grace-b, paired per run", ""]
          + table(["scenario", "req/s ratio", "CPU per request ratio"], ab) + [""]) if ab else []
tsec = ["## Targets", "",
        "Each figure is a median of paired per-run ratios with their range; \"the better shape\" is",
        "whichever of grace's two thread shapes has the higher median in that cell.", ""]
tsec += table(["target", "figure", ""], targets) + [""]

# ---------------------------------------------------------------------------
# Plots (plain SVG, no dependencies).
# ---------------------------------------------------------------------------
COLORS = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf", "#000000"]


def svg_plot(path, title, xlabels, series, ylabel):
    w, h, left, right, top, bottom = 760, 420, 70, 230, 40, 50
    pw, ph = w - left - right, h - top - bottom
    ymax = max([v for ys in series.values() for v in ys if v == v] + [1])
    step = 10 ** len(str(int(ymax))) / 10
    while ymax / step < 4:
        step /= 2
    ytop = step * (int(ymax / step) + 1)
    n = len(xlabels)

    def px(i):
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def py(v):
        return top + ph - ph * v / ytop

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{left}" y="22" font-size="14" font-weight="bold">{title}</text>']
    v = 0.0
    while v <= ytop + 1e-9:
        o.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + pw}" y2="{py(v):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
        v += step
    for i, lab in enumerate(xlabels):
        o.append(f'<text x="{px(i):.1f}" y="{top + ph + 18}" text-anchor="middle">{lab}</text>')
    o.append(f'<text x="{left + pw / 2}" y="{h - 10}" text-anchor="middle">connections</text>')
    o.append(f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" text-anchor="middle">{ylabel}</text>')
    for k, (name, ys) in enumerate(series.items()):
        c = COLORS[k % len(COLORS)]
        pts = [(px(i), py(y)) for i, y in enumerate(ys) if y == y]
        if len(pts) > 1:
            o.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for a, b in pts:
            o.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{c}"/>')
        ly = top + 10 + 18 * k
        o.append(f'<line x1="{left + pw + 15}" y1="{ly}" x2="{left + pw + 35}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        o.append(f'<text x="{left + pw + 40}" y="{ly + 4}">{LABEL.get(name, name)}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
stem = os.path.splitext(out)[0]
plots = []
for fname, title, prefix, names in (
    ("connections", "GET / keep-alive: median req/s against connections", "keep-alive c",
     ["keep-alive c1", "keep-alive c16", "keep-alive c64", "keep-alive c256", "keep-alive c1000",
      "keep-alive c4000"]),
    ("blocking", "GET /sleep?ms=2 (a blocking handler): median req/s against connections",
     "sleep 2 ms c", ["sleep 2 ms c64", "sleep 2 ms c256", "sleep 2 ms c1024"]),
):
    scs = [by_name[nm] for nm in names if nm in by_name]
    if len(scs) < 2:
        continue
    servers = []
    for s in scs:
        servers += [x for x in s["servers"] if x not in servers]
    servers.sort(key=lambda x: ORDER.index(x) if x in ORDER else 99)
    series = {x: [median_of(x, s) if x in s["servers"] else float("nan") for s in scs] for x in servers}
    path = f"{stem}-{fname}.svg"
    svg_plot(path, title, [s["name"][len(prefix):] for s in scs], series, "req/s")
    plots.append(f"![{title}]({os.path.basename(path)})")

# ---------------------------------------------------------------------------
# Every run.
# ---------------------------------------------------------------------------
raw = table(["scenario", "server", "run", "req/s", "requests", "p50", "p99", "errors",
             "unanswered", "idle held/alive", "server CPU", "CPU µs/req", "wrk CPU", "other CPU", "tries"], [])
for s in scenarios:
    for x in s["servers"]:
        for k in range(1, runs + 1):
            r = load(x, s["si"], k)
            if r is None:
                raw.append(f"| {s['name']} | {LABEL.get(x, x)} | {k} | failed |" + " |" * 11)
                continue
            errs = int(sum(r[e] for e in ERR_KEYS))
            idle = f"{int(r['idle_ready'])}/{int(r['idle_alive'])}" if s["idle"] else ""
            raw.append(
                f"| {s['name']} | {LABEL.get(x, x)} | {k} | {r['rps']:,.0f} | {int(r['requests'])} | "
                f"{fmt_lat(r['p50'])} | {fmt_lat(r['p99'])} | {errs} | {fmt_num(r.get('stalled', float('nan')))} | "
                f"{idle} | {r['srv_cpu']:.0f}% | {cpu_us(r):.1f} | {r['wrk_cpu']:.0f}% | {r['other_cpu']:.0f}% | "
                f"{int(r.get('tries', 1))} |")

model = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
commit = sh(f"git -C {root} rev-parse --short HEAD")
dirty = sh(f"git -C {root} status --porcelain -- src examples benches/peers Cargo.toml Cargo.lock")
used = []
for s in scenarios:
    used += [x for x in s["servers"] if x not in used]
peers = {
    "grace": "grace: `examples/hello` (a thread per request, idle connections parked in one epoll set; TCP_DEFER_ACCEPT 1 s, SCHED_BATCH)",
    "grace-pc": "grace per-connection: `--threads per-connection`",
    "grace-ll": "grace, hyper's knobs: `--defer-accept-ms 0 --no-sched-batch`",
    "grace-pcll": "grace per-connection, hyper's knobs: `--threads per-connection --defer-accept-ms 0 --no-sched-batch`",
    "grace-b": "grace-b: `" + (os.environ.get("GRACE_B_BIN") or "examples/hello") + " " + os.environ.get("GRACE_B_ARGS", "") + "`",
    "hyper": "hyper: `benches/peers` hyper-hello (hyper 1 + tokio multi-thread, 1 worker under taskset; blocking routes in `spawn_blocking`)",
    "astra": "astra 0.4: `benches/peers` astra-hello, its default worker cap (15 per CPU)",
    "astra-w": "astra (cap raised): the same with `max_workers` = the cell's connections + 64",
    "tiny": "tiny_http 0.12: `benches/peers` tiny-hello (1 recv worker under taskset, plus tiny_http's own connection threads)",
    "nginx": "nginx " + sh("nginx -v 2>&1 | sed 's/.*nginx\\///'") + " (1 worker, `return 200`)",
    "nethttp": "Go net/http (" + sh("go version | awk '{print $3}'") + ", GOMAXPROCS 1 under taskset)",
}
head = [
    "# grace and its peers", "",
    f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; grace commit {commit}"
    + (" (with uncommitted changes)" if dirty else ""),
    f"- CPU: {model}; nproc {os.cpu_count()}; kernel {platform.release()}",
    f"- server pinned to CPU {scpu}, wrk (`-t1`) to CPU {ccpu}; {runs} runs of {duration} per cell, interleaved",
    f"- {sh('wrk -v 2>&1 | head -1')}; {sh('rustc --version')}",
    "", "Servers:", *[f"- {peers.get(x, x)}" for x in used], "",
    "Scenarios (`wrk --latency -d DURATION ARGS URL`):",
    *[f"- {s['name']}: `{shlex.join(s['args'])} http://127.0.0.1:PORT{s['path']}`"
      + (f", with {s['idle']:,} idle keep-alive connections held (benches/idle.py)" if s["idle"] else "")
      for s in scenarios], "",
]
notes = [
    "Server CPU: the CPU time the server used during the wrk run; per request, that time over the",
    "requests served (the server's cost per request, whoever is the bottleneck). wrk CPU near 100%",
    "means the client limited the rate. Other CPU: busy time of all CPUs minus server and wrk; a",
    "cell where it exceeded MAX_OTHER was run again (tries).", "",
]
doc = head + ab_sec + tsec + plots + [""] + doc_groups + notes + ["## Every run", ""] + raw + [""]
with open(out, "w") as f:
    f.write("\n".join(doc))
print("\n".join(ab_sec + tsec))
print("\n".join(printed))
print(f"report: {out}")
