#!/usr/bin/env bash
# CI for the Python package: a fresh venv, maturin and pytest from PyPI (pinned), the wheel
# built and installed, then the whole pytest suite. Needs network to PyPI and crates.io only.
#
#   bash bindings/python/ci.sh            # from anywhere
#
# Environment: PYTHON (default python3, must be >= 3.10), VENV (default
# bindings/python/.venv), CARGO_TARGET_DIR (honoured by maturin), MATURIN_ARGS (extra
# arguments to `maturin build`, e.g. --release).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

fail() { echo "python ci: FAILED: $*" >&2; exit 1; }
trap 'echo "python ci: FAILED at line $LINENO (exit $?)" >&2' ERR

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$here/.venv}"
MATURIN_VERSION="1.16.0"
PYTEST_VERSION="9.0.1"
MYPY_VERSION="2.4.1"

command -v "$PYTHON" >/dev/null || fail "no $PYTHON on PATH"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || fail "$PYTHON is $("$PYTHON" -V 2>&1); Python >= 3.10 is required"
command -v cargo >/dev/null || fail "cargo is required to build the extension"

echo "== python ci: venv at $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" \
        || fail "could not create a venv (on Debian/Ubuntu: apt-get install python3-venv)"
fi
py="$VENV/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check \
    "maturin==$MATURIN_VERSION" "pytest==$PYTEST_VERSION" "mypy==$MYPY_VERSION"

echo "== python ci: clippy (the binding is outside the root workspace)"
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --locked --all-targets -- -D warnings
else
    echo "cargo clippy not installed: skipped"
fi

echo "== python ci: check against the free-threaded ABI (CPython 3.14t, no interpreter needed)"
# No free-threaded interpreter is installable here from the package registries, so the wheel
# cannot be built or tested for 3.14t; this at least keeps the extension compiling for that
# ABI (PyO3 0.30 supports free-threading from 3.14; the abi3 feature falls back to a
# version-specific build there). Its own target dir: another interpreter config rebuilds pyo3.
ft_config="$(mktemp)"
printf '%s\n' implementation=CPython version=3.14 shared=true abi3=false \
    build_flags=Py_GIL_DISABLED suppress_build_script_link_lines=true >"$ft_config"
PYO3_CONFIG_FILE="$ft_config" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}/free-threaded" \
    cargo check --locked --quiet
rm -f "$ft_config"

echo "== python ci: maturin build"
rm -rf "$here/dist"
# shellcheck disable=SC2086 # MATURIN_ARGS is a list of words on purpose
"$VENV/bin/maturin" build --locked --interpreter "$py" --out "$here/dist" ${MATURIN_ARGS:-}
wheels=("$here"/dist/*.whl)
[ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] || fail "expected one wheel in dist/"

echo "== python ci: wheel contents"
"$py" - "${wheels[0]}" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = [
    "tollgate/__init__.py", "tollgate/py.typed", "tollgate/_tollgate.pyi",
    "rate_limiter/__init__.py", "rate_limiter/rps_limiter.py",
    "rate_limiter/model_rate_limiter.py", "rate_limiter/py.typed",
]
missing = [n for n in need if n not in names]
if not any(n.startswith("tollgate/_tollgate") and n.endswith((".so", ".pyd")) for n in names):
    missing.append("tollgate/_tollgate extension module")
if missing:
    sys.exit(f"wheel lacks: {missing}")
print(f"ok: {len(names)} files")
PY

echo "== python ci: install and test"
"$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "${wheels[0]}"
# Run from the tests directory so the installed wheel, not the source tree, is imported.
cd "$here/tests"
echo "== python ci: type stubs against the installed module (stubtest), the packages typed (mypy)"
"$py" -m mypy.stubtest tollgate._tollgate
"$py" -m mypy --strict --no-incremental --cache-dir=/dev/null -p tollgate
# The drop-in keeps the seed's signatures, some of them unannotated: checked, not --strict.
"$py" -m mypy --no-incremental --cache-dir=/dev/null -p rate_limiter
echo "== python ci: pytest"
"$py" -m pytest -q -p no:cacheprovider --rootdir "$here" -c "$here/pyproject.toml" "$here/tests"
echo "== python ci: ok"
