#!/usr/bin/env bash
# The README's test command, and exactly what CI runs (.ci/run): makes sure that everything the tests start is
# installed (installs what is missing with apt-get when it can, or says in one line what to install), then runs every
# test with `dotnet test -c Release`. Extra arguments go to dotnet test (e.g. --filter FullyQualifiedName~DrainTests).
# Results: the console, and one .trx file per test project in artifacts/test-results/.
set -euo pipefail
cd "$(dirname "$0")"

export DOTNET_CLI_TELEMETRY_OPTOUT=1
export DOTNET_NOLOGO=1

say() { echo "test.sh: $*" >&2; }

if ! command -v dotnet >/dev/null 2>&1; then
  say "dotnet not found: install the .NET SDK 10.0.100 or later (https://dotnet.microsoft.com/download), then run ./test.sh again."
  exit 1
fi

# The security tests play a second local user with setpriv, which needs root. A filtered run may not need it.
if [ "$(id -u)" -ne 0 ]; then
  if [ $# -eq 0 ]; then
    say "run it as root (sudo ./test.sh): the security tests play a second local user with setpriv, which needs root."
    exit 1
  fi
  say "not root: the security tests (a second local user with setpriv) fail unless your filter leaves them out."
fi

# What the functional tests start, as (command or file, Debian package): the load generators ab, wrk and h2load, curl,
# HAProxy in front of a fleet (FleetTests), setpriv and /usr/bin/python3 for the second local user (SecurityTests),
# systemd-socket-activate to play systemd's socket activation (SocketActivationTests), and clang and zlib for the
# Native AOT link (AotTests).
missing_tools=()
missing_packages=()
need() {
  local present=$1 tool=$2 package=$3
  if ! eval "$present" >/dev/null 2>&1; then
    missing_tools+=("$tool")
    missing_packages+=("$package")
  fi
}
need "command -v ab" ab apache2-utils
need "command -v wrk" wrk wrk
need "command -v h2load" h2load nghttp2-client
need "command -v curl" curl curl
need "command -v haproxy || test -x /usr/sbin/haproxy" haproxy haproxy
need "command -v setpriv" setpriv util-linux
need "command -v systemd-socket-activate" systemd-socket-activate systemd
need "test -x /usr/bin/python3" python3 python3
need "command -v clang" clang clang
need "test -e /usr/include/zlib.h" "zlib (zlib.h)" zlib1g-dev

if [ ${#missing_tools[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  if command -v apt-get >/dev/null 2>&1 && { [ ${#sudo[@]} -eq 0 ] || sudo -n true 2>/dev/null; }; then
    say "installing ${missing_packages[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_packages[@]}" >/dev/null
  else
    say "missing ${missing_tools[*]}: install them (Debian/Ubuntu: sudo apt-get install ${missing_packages[*]}), then run ./test.sh again."
    exit 1
  fi
fi

dotnet --version
rm -rf artifacts/test-results
# Two test projects write one .trx each: no LogFileName, which both would use and the second overwrite.
exec dotnet test -c Release --logger "console;verbosity=normal" --logger trx --results-directory artifacts/test-results "$@"
