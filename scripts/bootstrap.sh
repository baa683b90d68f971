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
if { [ ! -x .tools/bin/toxiproxy-server ] || [ ! -x .tools/bin/consul ]; } && ! command -v go >/dev/null \
   && [ ! -x /usr/local/go/bin/go ]; then
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

# Consul's server (the Consul lock backend's tests, drills, demo and benchmark): v1.15.4, the last
# MPL-2.0 release (later ones are under the BSL: not used). Its module on the Go module proxy has no
# nested modules, so the in-tree `replace` directives go and the published MPL-2.0 submodules come
# in their place (api v1.25.1, as the 1.15 branch later pinned). The Go toolchain checks every module
# against the checksum database; the Consul module itself must also match the hash pinned here, and
# each hashicorp/consul module must carry the MPL-2.0 licence. About 2.5 min on two cores, once.
consul_version=v1.15.4
consul_sum="h1:LTv+RcCUdZtNxMlSHbiOqgnDawcgHfMAcQqlig7i5wo="
if [ ! -x .tools/bin/consul ]; then
  go_cmd=$(command -v go || echo /usr/local/go/bin/go)
  go_minor=$("$go_cmd" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  if [ "$go_minor" -lt 20 ]; then
    echo "bootstrap: Consul $consul_version needs Go >= 1.20, found $("$go_cmd" env GOVERSION)" \
         "(on Debian 12: golang from bookworm-backports)" >&2
    exit 1
  fi
  echo "bootstrap: building consul $consul_version with $("$go_cmd" env GOVERSION) (a few minutes, once)"
  module_json=$(GOFLAGS= "$go_cmd" mod download -json "github.com/hashicorp/consul@$consul_version")
  got_sum=$(printf '%s' "$module_json" | sed -nE 's/^[[:space:]]*"Sum": "([^"]+)".*/\1/p')
  if [ "$got_sum" != "$consul_sum" ]; then
    echo "bootstrap: github.com/hashicorp/consul@$consul_version has checksum '$got_sum', expected $consul_sum" >&2
    exit 1
  fi
  module_dir=$(printf '%s' "$module_json" | sed -nE 's/^[[:space:]]*"Dir": "([^"]+)".*/\1/p')
  build_dir=.tools/build/consul-$consul_version
  rm -rf "$build_dir" && mkdir -p .tools/build
  cp -r "$module_dir" "$build_dir" && chmod -R u+w "$build_dir"
  (
    cd "$build_dir"
    for sub in api envoyextensions proto-public sdk troubleshoot; do
      "$go_cmd" mod edit -dropreplace="github.com/hashicorp/consul/$sub"
    done
    "$go_cmd" mod edit -require=github.com/hashicorp/consul/api@v1.25.1
    # Static (no cgo): the deployment copies this binary to the witness as it is.
    CGO_ENABLED=0 GOFLAGS=-mod=mod "$go_cmd" build -trimpath -ldflags "-s -w" -o "$repo_root/.tools/consul-$consul_version/consul" .
    GOFLAGS=-mod=mod "$go_cmd" mod verify
    for dir in $(GOFLAGS=-mod=mod "$go_cmd" list -m -f '{{.Dir}}' all | grep '/hashicorp/consul/'); do
      grep -q "Mozilla Public License, version 2.0" "$dir/LICENSE" \
        || { echo "bootstrap: $dir is not under the MPL-2.0" >&2; exit 1; }
    done
  )
  rm -rf "$build_dir"
  mkdir -p .tools/bin
  ln -sfn "../consul-$consul_version/consul" .tools/bin/consul
fi
