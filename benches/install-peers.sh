#!/usr/bin/env bash
# Installs wrk, valgrind (benches/callgrind.sh) and the optional peers of the benchmark harness with apt-get
# (Debian/Ubuntu, as root). Each package is optional: a failure is reported
# and the rest goes on; the harness (benches/run.sh, rss.py, handover.py)
# skips a peer that is not installed and says so.
#
#   sudo benches/install-peers.sh          # install, then build the Go peers
#   benches/install-peers.sh --build-only  # only (re)build the Go peers
#
# Go peers are built in GOPATH mode against Debian's packaged sources
# (/usr/share/gocode), so no network is needed besides the apt mirror:
# benches/peers/go/bin/{nethttp,gracehttp,tableflip}.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKGS=(wrk valgrind nginx-light golang-go golang-github-facebookgo-grace-dev golang-github-cloudflare-tableflip-dev)
missing=()

if [ "${1:-}" != "--build-only" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || echo "apt-get update failed; trying the installed lists" >&2
    for p in "${PKGS[@]}"; do
        if dpkg -s "$p" >/dev/null 2>&1; then
            echo "ok        $p (already installed)"
            continue
        fi
        alt=""
        [ "$p" = nginx-light ] && alt=nginx
        if apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1; then
            echo "installed $p"
        elif [ -n "$alt" ] && apt-get install -y -qq --no-install-recommends "$alt" >/dev/null 2>&1; then
            echo "installed $alt (instead of $p)"
        else
            echo "MISSING   $p (apt-get install failed)"
            missing+=("$p")
        fi
    done
    # The nginx package may start a system instance; the harness starts its own.
    if command -v nginx >/dev/null; then
        (service nginx stop || systemctl stop nginx || nginx -s quit) >/dev/null 2>&1 || true
    fi
fi

# Go peers.
GO=$(command -v go || ls /usr/lib/go/bin/go 2>/dev/null || true)
OUTDIR="$ROOT/benches/peers/go/bin"
mkdir -p "$OUTDIR"
if [ -z "$GO" ]; then
    echo "MISSING   go: the Go peers (nethttp, gracehttp, tableflip) are not built"
else
    export GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="${GOCACHE:-/tmp/grace-go-cache}"
    for peer in nethttp gracehttp tableflip; do
        if (cd "$ROOT/benches/peers/go/$peer" && "$GO" build -o "$OUTDIR/$peer" . ) 2>/tmp/grace-go-$peer.log; then
            echo "built     benches/peers/go/bin/$peer"
        else
            echo "MISSING   $peer: go build failed (see /tmp/grace-go-$peer.log):"
            sed 's/^/    /' /tmp/grace-go-$peer.log | head -5
            rm -f "$OUTDIR/$peer"
        fi
    done
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "not installed: ${missing[*]} (the harness skips the peers that need them)"
fi
exit 0
