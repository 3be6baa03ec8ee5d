#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv with everything the project
# needs, idempotently: when nothing changed since the last run it returns in about a second.
#
#   scripts/setup.sh                   CPU: torch as constraints.txt pins it, mmcv with CPU ops
#   scripts/setup.sh --cuda cu121      GPU: a CUDA torch from PyTorch's index and mmcv 2.1.0 with
#                                      CUDA ops: OpenMMLab's prebuilt wheel for torch 2.1 (cu118,
#                                      cu121), else compiled here (README, "GPU users")
#   scripts/setup.sh --check-cuda-ops  only checks that the environment's mmcv has CUDA kernels
#
# Settings (environment variables):
#   MMFASTERVIT_VENV      the environment (default: .venv in the checkout)
#   MMFASTERVIT_CACHE     where compiled mmcv wheels are kept (default: ~/.cache/mmfastervit)
#   MMFASTERVIT_TORCH     a torch release instead of the one constraints.txt pins: 2.1.x to 2.13.x
#                         (with --cuda the default is 2.1.2)
#   TORCH_INDEX_URL       an extra index pip looks for torch on, for the CPU-only build
#                         https://download.pytorch.org/whl/cpu; with --cuda the default is PyTorch's
#                         index of that CUDA release. Without it, pip takes torch from PyPI only.
#   TORCH_CUDA_ARCH_LIST  GPU architectures mmcv's CUDA ops are compiled for (default: the GPUs')
#   PYTHON, MAX_JOBS      interpreter of a new environment (python3.11); compile jobs (nproc)
#
# mmcv 2.1.0 has no wheel on PyPI for this stack and must be compiled with its ops against the
# exact torch it runs with (CPU ops: about 12 minutes on 2 idle cores). Each wheel is built once
# per machine into a cache outside the checkout, keyed by the torch build and the kind of ops, and
# installed from there.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${MMFASTERVIT_VENV:-$root/.venv}
cache=${MMFASTERVIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmfastervit}
python=${PYTHON:-python3.11}
stamp=$venv/.mmfastervit-setup

log() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

cuda=
check_only=false
while [ $# -gt 0 ]; do
    case $1 in
        --cuda) [ $# -ge 2 ] || fail "--cuda needs a CUDA tag of PyTorch's index, e.g. --cuda cu121"
                cuda=$2; shift 2 ;;
        --check-cuda-ops) check_only=true; shift ;;
        *) fail "unknown argument '$1' (usage: $0 [--cuda cu118|cu121|...] [--check-cuda-ops])" ;;
    esac
done
case $cuda in
    '' | cu[0-9][0-9]*) ;;
    *) fail "--cuda takes a CUDA tag of PyTorch's index such as cu118, cu121 or cu124, \
not '$cuda'" ;;
esac

# Exits non-zero, saying why, unless the environment's mmcv has CUDA kernels; runs one on a GPU if
# one is visible.
check_cuda_ops() {
    "$venv/bin/python" - <<'EOF'
import sys

try:
    import mmcv
    from mmcv.ops import get_compiling_cuda_version, nms
except ImportError as error:
    sys.exit(f'[setup] ERROR: mmcv has no compiled ops at all ({error})')
compiled_with = get_compiling_cuda_version()
if compiled_with == 'not available':
    sys.exit(f'[setup] ERROR: mmcv {mmcv.__version__} has no CUDA kernels: its ops were compiled '
             'for the CPU only (mmcv.ops.get_compiling_cuda_version() is "not available")')
import torch

if torch.cuda.is_available():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]], device='cuda')
    _, kept = nms(boxes, torch.tensor([0.9, 0.8], device='cuda'), 0.5)
    if kept.tolist() != [0]:
        sys.exit(f'[setup] ERROR: mmcv CUDA nms kept {kept.tolist()} of two overlapping boxes')
    print(f'[setup] mmcv CUDA kernels: compiled with CUDA {compiled_with}, nms ran on '
          f'{torch.cuda.get_device_name()}')
else:
    print(f'[setup] mmcv CUDA kernels: compiled with CUDA {compiled_with}; no GPU is visible, '
          'so none was run')
EOF
}

if $check_only; then
    [ -x "$venv/bin/python" ] || fail "no environment at $venv"
    check_cuda_ops
    exit
fi

pinned_torch=$(sed -n 's/^torch==//p' "$root/constraints.txt")
torch_version=${MMFASTERVIT_TORCH:-$pinned_torch}
if [ -n "$cuda" ] && [ -z "${MMFASTERVIT_TORCH:-}" ]; then
    torch_version=2.1.2
fi
case $torch_version in
    2.[1-9].* | 2.1[0-3].*) ;;
    *) fail "torch $torch_version is outside the supported range, 2.1 to 2.13. From torch 2.14 on,
torch's headers need C++20, and mmcv 2.1.0 compiles its ops as C++17: its build fails." ;;
esac
# OpenMMLab publishes mmcv 2.1.0 wheels with CUDA ops for torch 2.1 with CUDA 11.8 and 12.1 only.
prebuilt_mmcv=false
case $cuda:$torch_version in cu118:2.1.* | cu121:2.1.*) prebuilt_mmcv=true ;; esac
torch_index=${TORCH_INDEX_URL:-${cuda:+https://download.pytorch.org/whl/$cuda}}

settings="$torch_version $cuda $torch_index ${TORCH_CUDA_ARCH_LIST:-}"
fingerprint=$(cat "$root/constraints.txt" "$root/requirements.txt" "$root/requirements-dev.txt" \
    "$root/pyproject.toml" "$root/scripts/setup.sh" <(echo "$settings") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] && [ -x "$venv/bin/python" ]; then
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    log "creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
export PATH="$venv/bin:$PATH"   # torch's extension builder uses ninja only when it is on PATH
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }

# Every pip call is constrained to the tested versions; another torch replaces the torch pin.
constraints=$root/constraints.txt
if [ "$torch_version" != "$pinned_torch" ]; then
    constraints=$venv/mmfastervit-constraints.txt
    sed "s/^torch==.*/torch==$torch_version/" "$root/constraints.txt" > "$constraints"
fi

log "installing torch $torch_version${torch_index:+ (also looking on $torch_index)} and build tools"
pip install -q -c "$constraints" ${torch_index:+--extra-index-url "$torch_index"} \
    torch wheel ninja psutil setuptools numpy
torch_build=$("$venv/bin/python" -c 'import torch; print(torch.__version__)')
if [ -n "$cuda" ]; then
    torch_cuda=$("$venv/bin/python" -c 'import torch; print(torch.version.cuda or "")')
    [ "cu${torch_cuda//./}" = "$cuda" ] || fail "the torch in $venv is $torch_build, not a $cuda \
build: either $torch_index has no torch $torch_version for $cuda, or the environment held another \
torch already (set up a new one: MMFASTERVIT_VENV)"
fi

if $prebuilt_mmcv; then
    mmcv_index=https://download.openmmlab.com/mmcv/dist/$cuda/torch2.1.0/index.html
    log "installing OpenMMLab's prebuilt mmcv 2.1.0 for torch 2.1 and $cuda from $mmcv_index"
    pip install -q -c "$constraints" --only-binary mmcv -f "$mmcv_index" mmcv==2.1.0 ||
        fail "no prebuilt mmcv 2.1.0 for this Python, torch 2.1 and $cuda at $mmcv_index; \
use a Python that index has a wheel for, or compile mmcv with a newer torch (README, \"GPU users\")"
    mmcv_wheel=
else
    python_tag=$("$venv/bin/python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    build_env=(MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}")
    wheels=$cache/wheels/torch-$torch_build
    if [ -n "$cuda" ]; then
        nvcc=$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")
        [ -x "$nvcc" ] || fail "compiling mmcv's CUDA ops needs the CUDA toolkit $torch_cuda \
(nvcc) that torch $torch_build was built with: install it, then put its bin/ on PATH or set \
CUDA_HOME"
        nvcc_cuda=$("$nvcc" --version | sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')
        [ "${nvcc_cuda%%.*}" = "${torch_cuda%%.*}" ] || fail "nvcc ($nvcc) is CUDA $nvcc_cuda, \
torch $torch_build was built with CUDA $torch_cuda: install a CUDA $torch_cuda toolkit (same major \
release) and put it first on PATH or set CUDA_HOME"
        arch_list=${TORCH_CUDA_ARCH_LIST:-$("$venv/bin/python" -c 'import torch
print(";".join(sorted({"%d.%d" % torch.cuda.get_device_capability(i)
                       for i in range(torch.cuda.device_count())})))')}
        [ -n "$arch_list" ] || fail "no GPU is visible: set TORCH_CUDA_ARCH_LIST to the compute \
capabilities of the GPUs mmcv will run on, e.g. TORCH_CUDA_ARCH_LIST=\"8.0;9.0\""
        build_env+=(FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch_list"
                    CUDA_HOME="$(dirname "$(dirname "$nvcc")")")
        wheels=$wheels-cuda-ops-${arch_list//[^0-9]/_}
    fi
    mkdir -p "$wheels"
    mmcv_wheel=$(ls "$wheels"/mmcv-2.1.0-"$python_tag"-*.whl 2>/dev/null | head -n 1 || true)
    # Earlier set-ups kept one wheel directly in $cache/wheels, built against torch 2.13.0.
    legacy_wheel=$(ls "$cache"/wheels/mmcv-2.1.0-"$python_tag"-*.whl 2>/dev/null | head -n 1 ||
                   true)
    if [ -z "$mmcv_wheel" ] && [ -n "$legacy_wheel" ] && [ -z "$cuda" ] && \
            [ "${torch_build%%+*}" = 2.13.0 ]; then
        log "moving the mmcv wheel built for torch 2.13.0 by an earlier set-up into $wheels"
        mv "$legacy_wheel" "$wheels/"
        mmcv_wheel=$wheels/$(basename "$legacy_wheel")
    fi
    if [ -z "$mmcv_wheel" ]; then
        log "compiling mmcv 2.1.0 with its ${cuda:+CUDA and }CPU ops against torch $torch_build \
(once per machine and torch build; CPU ops alone take about 12 minutes on 2 idle cores)"
        rm -rf "$wheels.partial"
        # --no-cache-dir: pip's own wheel cache keys a built mmcv by its source only, and would
        # hand back a wheel compiled against another torch.
        env "${build_env[@]}" "$venv/bin/python" -m pip --disable-pip-version-check wheel -q \
            --no-cache-dir --no-build-isolation --no-deps -c "$constraints" -w "$wheels.partial" \
            mmcv==2.1.0
        mv "$wheels.partial"/mmcv-2.1.0-*.whl "$wheels/"
        rm -rf "$wheels.partial"
        mmcv_wheel=$(ls "$wheels"/mmcv-2.1.0-"$python_tag"-*.whl | head -n 1)
    fi
    log "installing mmcv from $mmcv_wheel"
fi

log "installing the OpenMMLab stack and the test tools"
pip install -q -c "$constraints" ${mmcv_wheel:+"$mmcv_wheel"} \
    -r "$root/requirements.txt" -r "$root/requirements-dev.txt"
pip install -q -c "$constraints" --no-deps --no-build-isolation -e "$root"

if ! "$venv/bin/python" -c "from mmcv.ops import nms, roi_align" 2>/dev/null; then
    fail "mmcv is installed without its compiled ops (mmcv._ext is missing).${mmcv_wheel:+
[setup] Delete $mmcv_wheel and run this script again to rebuild it.}"
fi
if [ -n "$cuda" ] && ! check_cuda_ops; then
    if [ -n "$mmcv_wheel" ]; then
        fail "delete $mmcv_wheel and run this script again, with nvcc $torch_cuda on PATH"
    fi
    fail "the mmcv wheel pip installed is not OpenMMLab's CUDA build for torch 2.1 and $cuda"
fi
echo "$fingerprint" > "$stamp"
log "ready: $venv (torch $torch_build)"
