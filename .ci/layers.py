#!/usr/bin/env python3
"""Fails when the library's modules import in a direction DESIGN.md does not
draw, when `sys` becomes public, or when `unsafe` appears outside `src/sys/`.

The layers, bottom to top (DESIGN.md, "Layers"); a module may import from its
own layer and the ones below, never from one above:

  1  sys, fmt                       libc wrappers, log formatting
  2  listener, drain, notify, pool  the layers' foundations
  3  conn, pidfile, upgrade, holder
  4  accept, control, protocol
  5  park                           the idle poller
  6  server                         ties the runtime together
  7  http1                          HTTP/1.1, a client of the runtime
  8  lib.rs                         the crate root

Besides `crate::NAME` paths, the `http` and `httparse` crates count as part
of layer 7: no runtime module may use them.

Run from the repository root: python3 .ci/layers.py
"""
import pathlib
import re
import sys

LAYERS = {
    "sys": 1, "fmt": 1,
    "listener": 2, "drain": 2, "notify": 2, "pool": 2,
    "conn": 3, "pidfile": 3, "upgrade": 3, "holder": 3,
    "accept": 4, "control": 4, "protocol": 4,
    "park": 5,
    "server": 6,
    "http1": 7, "http": 7, "httparse": 7,
    "lib": 8,
}
# Re-exports of types defined in sys, allowed to be public.
PUBLIC_FROM_SYS = {"SockAddr", "Exit"}

root = pathlib.Path("src")
problems = []


def module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(root)
    return rel.parts[0].removesuffix(".rs") if rel.parts else "lib"


def code_lines(text: str):
    """Lines with comments and string literals blanked (good enough for
    `use` paths and the `unsafe` keyword)."""
    for n, line in enumerate(text.splitlines(), 1):
        line = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
        line = line.split("//", 1)[0]
        yield n, line


for path in sorted(root.rglob("*.rs")):
    mod = module_of(path)
    rank = LAYERS.get(mod)
    if rank is None:
        problems.append(f"{path}: module `{mod}` has no layer in .ci/layers.py")
        continue
    text = path.read_text()
    # Under `#[cfg(test)] mod ...` (test modules end their files), imports
    # may reach up: a test drives the module from outside. So may files
    # named tests.rs or under a tests/ folder.
    in_tests = path.name == "tests.rs" or "tests" in path.parts
    cfg_test = False
    for n, line in code_lines(text):
        if cfg_test and re.match(r"\s*(pub(\([a-z]+\))?\s+)?mod\s", line):
            in_tests = True
        if line.strip():
            cfg_test = bool(re.match(r"\s*#\[cfg\(test\)\]", line))
        targets = set(re.findall(r"\bcrate::([a-z_0-9]+)", line))
        if mod != "http1":
            targets |= set(re.findall(r"(?<![\w:])(httparse|http)::", line))
        for t in targets:
            tr = LAYERS.get(t)
            if tr is not None and tr > rank and not in_tests:
                problems.append(
                    f"{path}:{n}: `{mod}` (layer {rank}) imports `{t}` (layer {tr}), "
                    f"which is above it: {line.strip()}"
                )
        if mod != "sys" and re.search(r"\bunsafe\b", line):
            problems.append(f"{path}:{n}: `unsafe` outside src/sys/: {line.strip()}")
        m = re.search(r"\bpub\s+use\s+(?:crate::)?sys::(.*)", line)
        if m and mod != "sys":
            names = set(re.findall(r"[A-Za-z_]+", m.group(1)))
            if not names <= PUBLIC_FROM_SYS:
                problems.append(f"{path}:{n}: re-exports sys items publicly: {line.strip()}")

lib = (root / "lib.rs").read_text()
if not re.search(r"^mod sys;$", lib, re.M):
    problems.append("src/lib.rs: `sys` must be declared `mod sys;` (private to the crate)")

if problems:
    print("layer check failed:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"layers ok: {sum(1 for _ in root.rglob('*.rs'))} files, imports point down, sys private")
