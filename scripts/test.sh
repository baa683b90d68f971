#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs pytest.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo_root/scripts/bootstrap.sh"
cd "$repo_root"
# Two workers (tests/conftest.py keeps the drills, the deployment and the benchmarks on one of them,
# one after another); the suite stays under 15 minutes on two cores that way.
exec .venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
