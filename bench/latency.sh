#!/usr/bin/env bash
# Latency around handoffs (issue 12) in one command: publishes the sample three ways (Native AOT, ReadyToRun JIT,
# plain JIT), the open-loop client (bench/OpenLoop) and, when Go is there, the tableflip anchor (bench/tableflip,
# from Debian's golang-go and golang-github-cloudflare-tableflip-dev, offline), then runs bench/latency.py "$@".
# Results: bench/results/latency.md, latency.svg, latency.json (--output NAME for others).
set -euo pipefail
cd "$(dirname "$0")/.."

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
command -v wrk >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/cloudflare/tableflip ]; then
  apt-get install -y -qq golang-go golang-github-cloudflare-tableflip-dev >/dev/null 2>&1 || true
fi

mkdir -p bench/out
dotnet publish samples/WebApi -c Release -r linux-x64 -p:PublishAot=true -o bench/out/aot --nologo -v quiet
dotnet publish samples/WebApi -c Release -r linux-x64 -o bench/out/r2r --nologo -v quiet
dotnet publish samples/WebApi -c Release -o bench/out/sample --nologo -v quiet
dotnet publish bench/OpenLoop -c Release -o bench/out/openloop --nologo -v quiet
rm -f bench/out/tableflip-server
if command -v go >/dev/null 2>&1; then
  (cd bench/tableflip && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE="$PWD/../out/gocache" \
     go build -o ../out/tableflip-server .) || echo "tableflip: build failed, its row is skipped"
else
  echo "tableflip: no Go toolchain (apt-get install golang-go golang-github-cloudflare-tableflip-dev), its row is skipped"
fi

exec python3 bench/latency.py "$@"
