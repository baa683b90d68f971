#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently: Debian
# packages only when a tool is missing, the virtualenv at .venv/ only when
# pyproject.toml changed since the last install.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing_debs=()
command -v python3 >/dev/null || missing_debs+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing_debs+=(python3-venv)
# The trading-lock tests start their own redis-server processes.
command -v redis-server >/dev/null || missing_debs+=(redis-server)
# The alert-rule tests run promtool, the scrape test a real prometheus, the routing test amtool.
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || missing_debs+=(prometheus)
command -v amtool >/dev/null || missing_debs+=(prometheus-alertmanager)
# The deployment tests build a throwaway Debian root (mmdebstrap), boot it
# with systemd-nspawn in network namespaces and apply the playbooks over SSH.
command -v mmdebstrap >/dev/null || missing_debs+=(mmdebstrap)
command -v ssh >/dev/null || missing_debs+=(openssh-client)
command -v ip >/dev/null || missing_debs+=(iproute2)
command -v systemd-analyze >/dev/null || missing_debs+=(systemd)
command -v systemd-nspawn >/dev/null || missing_debs+=(systemd-container)
# deploy/ansible/build-wheelhouse.sh resolves with Debian's own Python (the hosts' version).
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || missing_debs+=(python3-venv)
# The chaos drills cut the heartbeat link with netfilter rules inside network namespaces,
# and build toxiproxy's server with Go (below) when it is not there yet.
command -v iptables >/dev/null || missing_debs+=(iptables)
if [ ! -x .tools/bin/toxiproxy-server ] && ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
  missing_debs+=(golang-go)
fi
if [ ${#missing_debs[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing_debs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing_debs[@]}"
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"bootstrap: Python >= 3.11 is required, found {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi

stamp=.venv/.understudy-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$wanted" > "$stamp"
fi

# toxiproxy's server (the chaos drills' TCP faults): `go install` of its module at a pinned
# version into .tools/ (git-ignored). Its command is cmd/server; .tools/bin/toxiproxy-server
# points at it. v2.12.0 needs Go >= 1.23; with an older Go (Debian bookworm's golang-go is
# 1.19) v2.5.0 (its go.mod asks for Go 1.17) has the same toxics.
if [ ! -x .tools/bin/toxiproxy-server ]; then
  go_cmd=$(command -v go || echo /usr/local/go/bin/go)
  go_minor=$("$go_cmd" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  toxiproxy_version=v2.12.0
  [ "$go_minor" -ge 23 ] || toxiproxy_version=v2.5.0
  echo "bootstrap: building toxiproxy-server $toxiproxy_version with $("$go_cmd" env GOVERSION)"
  GOBIN="$repo_root/.tools/toxiproxy-$toxiproxy_version" \
    "$go_cmd" install "github.com/Shopify/toxiproxy/v2/cmd/server@$toxiproxy_version"
  mkdir -p .tools/bin
  ln -sfn "../toxiproxy-$toxiproxy_version/server" .tools/bin/toxiproxy-server
fi
