#!/bin/sh
# Create the project's virtual environment with a supported Python, and say which.
# Usage: scripts/venv.sh VENV [PYTHON]      (run from the repository root; `make` does)
#
# Supported: Python 3.11, 3.12 and 3.13 (pyproject.toml's requires-python).
# With PYTHON (`make PY=/path/to/python3.12`) only that interpreter is tried. Otherwise
# the newest supported one on PATH wins (python3.13, python3.12, python3.11, python3),
# with one exception: an interpreter for which pip finds the pinned torch wheel on local
# disk (pip's find-links) comes first. The development machines carry a CPU build of
# torch 2.13.0 for Python 3.11 only; for any other version pip takes PyPI's torch, a CUDA
# build (measured for 3.12: about 1.4 GB downloaded, 2.7 GB of wheels, ~5 GB installed),
# where the local wheel installs in seconds. Elsewhere PyPI serves the same build for
# every version, so the newest Python is the right choice.
# An existing VENV is reused as it is (remove it to switch Python).
venv=$1
want=$2
supported="3.13 3.12 3.11"
torch=$(grep -o '"torch==[^"]*"' pyproject.toml | head -n 1 | tr -d '"')

version_of() {  # prints X.Y.Z, or nothing when $1 does not run (a pyenv shim for a
    # version that is installed but not selected exists on PATH and fails)
    "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null
}

is_supported() {  # $1 = X.Y.Z
    for s in $supported; do
        case $1 in "$s".*) return 0 ;; esac
    done
    return 1
}

has_local_torch() {  # pip resolves the torch pin without any index: a wheel on disk.
    # --target: a system Python's pip refuses to plan an install into itself (PEP 668).
    [ -n "$torch" ] || return 1
    probe="${TMPDIR:-/tmp}/slmchat-venv-probe.$$"
    "$1" -m pip install --dry-run --no-index --no-deps --quiet --target "$probe" \
        --disable-pip-version-check "$torch" >/dev/null 2>&1
    found=$?
    rm -rf "$probe"
    return $found
}

if [ -x "$venv/bin/python" ]; then
    v=$(version_of "$venv/bin/python")
    if [ -n "$v" ] && is_supported "$v"; then
        echo "reusing $venv (Python $v)"
        exit 0
    fi
    echo "slmchat: $venv was made with ${v:+Python $v, }an unsupported or missing Python;" \
         "remove it (rm -rf $venv) and rerun make" >&2
    exit 1
fi

if [ -n "$want" ]; then
    candidates=$want
else
    candidates="python3.13 python3.12 python3.11 python3"
fi

chosen="" chosen_v="" reason="" seen=""
for name in $candidates; do
    path=$(command -v "$name" 2>/dev/null) || continue
    v=$(version_of "$path")
    if [ -z "$v" ]; then
        seen="$seen${seen:+, }$name (does not run)"
        continue
    fi
    seen="$seen${seen:+, }$name $v"
    is_supported "$v" || continue
    if [ -n "$want" ]; then
        chosen=$path chosen_v=$v reason="named by PY"
        break
    fi
    if has_local_torch "$path"; then
        chosen=$path chosen_v=$v reason="pip has $torch for it on local disk"
        break
    fi
    if [ -z "$chosen" ]; then
        chosen=$path chosen_v=$v reason="the newest supported Python found"
    fi
done

if [ -z "$chosen" ]; then
    echo "slmchat needs Python 3.11, 3.12 or 3.13 (found: ${seen:-none on PATH});" \
         "install one (Debian/Ubuntu: sudo apt install python3.12 python3.12-venv;" \
         "macOS: brew install python@3.13; or pyenv install 3.13) and rerun make," \
         "or name it: make PY=/path/to/python3.13" >&2
    exit 1
fi

echo "Python $chosen_v ($chosen): $reason"
if ! "$chosen" -m venv "$venv"; then
    rm -rf "$venv"
    mm=$(echo "$chosen_v" | cut -d. -f1-2)
    echo "slmchat: could not create $venv with $chosen; its venv module is missing" \
         "(Debian/Ubuntu: sudo apt install python$mm-venv), then rerun make" >&2
    exit 1
fi
