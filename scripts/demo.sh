#!/usr/bin/env bash
# The local demo: installs what it needs, then runs it.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo_root/scripts/bootstrap.sh"
cd "$repo_root"
exec .venv/bin/understudy demo "$@"
