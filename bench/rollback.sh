#!/usr/bin/env bash
# Rollback versus redeploying the old release (issue 20): publishes the sample (framework-dependent JIT), then runs
# bench/rollback.py "$@". Results: bench/results/rollback.md and rollback.json (--output NAME for others).
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
mkdir -p bench/out
dotnet publish samples/WebApi -c Release -o bench/out/sample --nologo -v quiet
exec python3 bench/rollback.py "$@"
