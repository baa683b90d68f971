#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs pytest.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo_root/scripts/bootstrap.sh"
cd "$repo_root"
exec .venv/bin/python -m pytest "$@"
