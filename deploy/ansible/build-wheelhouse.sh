#!/usr/bin/env bash
# Builds the wheelhouse the node role installs from: understudy's own wheel
# plus every dependency as a binary wheel for the hosts (Debian 12: CPython
# 3.11.2, glibc 2.36), so the hosts need neither PyPI nor a compiler, and
# both nodes run exactly the same bits. Also SHA256SUMS of the wheels, and
# wheels.tar holding both, which is what the role copies.
#   deploy/ansible/build-wheelhouse.sh [OUT_DIR]       (default: dist/wheelhouse)
#
# Run it with the hosts' exact Python version (PYTHON, default /usr/bin/python3,
# which is right on any Debian 12 machine): pip evaluates dependency markers
# with the interpreter that runs it, whatever --python-version says, and some
# depend on the patch level (redis needs async-timeout below 3.11.3).
# TARGET_ARCH=aarch64 for ARM hosts; TARGET_PYTHON_VERSION for other hosts.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$(realpath -m "${1:-$repo_root/dist/wheelhouse}")
python=${PYTHON:-/usr/bin/python3}
python_version=${TARGET_PYTHON_VERSION:-3.11.2}
arch=${TARGET_ARCH:-x86_64}
glibc_minor=36  # bookworm's glibc 2.36: any manylinux_2_N with N <= 36 runs there

have=$("$python" -c 'import platform; print(platform.python_version())')
if [ "$have" != "$python_version" ]; then
  echo "build-wheelhouse: $python is Python $have but the hosts run $python_version;" \
       "set PYTHON to a $python_version interpreter (or TARGET_PYTHON_VERSION)" >&2
  exit 2
fi

abi=cp$(echo "$python_version" | cut -d. -f1,2 | tr -d .)
platforms=(--platform "manylinux2014_$arch" --platform any)
for minor in $(seq 17 "$glibc_minor"); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
[ "$arch" = x86_64 ] && platforms+=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux_2_5_x86_64)

build_env=$(mktemp -d)
trap 'rm -rf "$build_env"' EXIT
"$python" -m venv "$build_env"
pip=("$build_env/bin/python" -m pip --disable-pip-version-check --quiet)

rm -rf "$out"
mkdir -p "$out"
"${pip[@]}" wheel --no-deps --wheel-dir "$out" "$repo_root"
"${pip[@]}" download --only-binary=:all: --python-version "$python_version" --implementation cp \
  --abi "$abi" --abi abi3 --abi none "${platforms[@]}" --dest "$out" "$out"/understudy-*.whl
# What the node role ships: one archive (one transfer per host), and the
# checksums that name the release and are verified on the host.
(cd "$out" && sha256sum -- *.whl > SHA256SUMS && tar -cf wheels.tar -- *.whl SHA256SUMS)
echo "wheelhouse: $out ($(ls "$out"/*.whl | wc -l) wheels)"
