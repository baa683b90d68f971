#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs pytest.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo_root/scripts/bootstrap.sh"
cd "$repo_root"
# Two workers, each test module whole on one of them (its module-scoped servers — the drill lab,
# the booted deployment hosts, the Consul cluster — started once); the suite stays under 15
# minutes on two cores that way. (--dist loadgroup would do nothing: pytest-xdist 3.8's groups
# are lost on pytest 9.)
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
