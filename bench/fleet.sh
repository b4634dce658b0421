#!/usr/bin/env bash
# The fleet benchmark in one command: installs haproxy and the load tools if missing (Debian packages), publishes
# the sample, then runs bench/fleet.py (--help for options): a rolling restart of three instances behind HAProxy,
# library vs plain Kestrel, HAProxy retries off and on, ab and wrk. Results: bench/results/fleet.md, fleet.json.
set -euo pipefail
cd "$(dirname "$0")/.."

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v ab >/dev/null 2>&1 || need+=(apache2-utils)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

dotnet publish bench/BenchSample -c Release -o bench/out/sample --nologo -v quiet

exec /usr/bin/python3 bench/fleet.py "$@"
