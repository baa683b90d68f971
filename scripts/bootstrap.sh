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
# The deployment tests build a throwaway Debian root, boot it in network
# namespaces and apply the playbooks over SSH; they verify units offline.
command -v debootstrap >/dev/null || missing_debs+=(debootstrap)
command -v ssh >/dev/null || missing_debs+=(openssh-client)
command -v ip >/dev/null || missing_debs+=(iproute2)
command -v systemd-analyze >/dev/null || missing_debs+=(systemd)
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
