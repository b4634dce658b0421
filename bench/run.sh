#!/usr/bin/env bash
# The benchmark in one command: installs the load tools and matplotlib if missing (Debian packages), publishes
# the sample and the HTTP/2 client, then runs bench/bench.py (pass --quick for a short run, --help for more).
# Results: bench/results/latest.md, latest.png, latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
need=()
command -v ab >/dev/null 2>&1 || need+=(apache2-utils)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
/usr/bin/python3 -c "import matplotlib" >/dev/null 2>&1 || need+=(python3-matplotlib)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

dotnet publish bench/BenchSample -c Release -o bench/out/sample --nologo -v quiet
dotnet publish bench/H2Client -c Release -o bench/out/h2client --nologo -v quiet

# Debian's python3 (the one that python3-matplotlib is installed for).
exec /usr/bin/python3 bench/bench.py "$@"
