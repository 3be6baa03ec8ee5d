#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv with everything the project needs,
# idempotently: when nothing changed since the last run it returns in about a second.
#
# mmcv 2.1.0 has no wheel on PyPI and must be compiled with its ops against this exact torch
# (15-18 minutes on 2 cores). The wheel is built once per machine into a cache outside the checkout
# ($MMFASTERVIT_CACHE, default ~/.cache/mmfastervit) and installed from there afterwards.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${MMFASTERVIT_VENV:-$root/.venv}
cache=${MMFASTERVIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmfastervit}
python=${PYTHON:-python3.11}
constraints=$root/constraints.txt
stamp=$venv/.mmfastervit-setup

fingerprint=$(cat "$constraints" "$root/requirements.txt" "$root/requirements-dev.txt" \
    "$root/pyproject.toml" "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] && [ -x "$venv/bin/python" ]; then
    exit 0
fi

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
    log "creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
export PATH="$venv/bin:$PATH"   # torch's extension builder uses ninja only when it is on PATH
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }

log "installing torch and build tools"
pip install -q -c "$constraints" torch wheel ninja psutil setuptools numpy

mkdir -p "$cache/wheels"
mmcv_wheel=$(ls "$cache"/wheels/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$mmcv_wheel" ]; then
    log "building mmcv 2.1.0 with its ops (once per machine, about 15-18 minutes on 2 cores)"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        pip wheel -q --no-build-isolation --no-deps -c "$constraints" -w "$cache/wheels.partial" mmcv==2.1.0
    mv "$cache"/wheels.partial/mmcv-2.1.0-*.whl "$cache/wheels/"
    rm -rf "$cache/wheels.partial"
    mmcv_wheel=$(ls "$cache"/wheels/mmcv-2.1.0-*.whl | head -n 1)
fi

log "installing mmcv from $mmcv_wheel and the OpenMMLab stack"
pip install -q -c "$constraints" "$mmcv_wheel" -r "$root/requirements.txt" -r "$root/requirements-dev.txt"
pip install -q -c "$constraints" --no-deps --no-build-isolation -e "$root"

if ! "$venv/bin/python" -c "from mmcv.ops import nms, roi_align" 2>/dev/null; then
    echo "[setup] ERROR: mmcv is installed without its compiled ops (mmcv._ext is missing)." >&2
    echo "[setup] Delete $mmcv_wheel and run this script again to rebuild it." >&2
    exit 1
fi
echo "$fingerprint" > "$stamp"
log "ready: $venv"
