#!/usr/bin/env bash
# Tests the project against another torch release, by default the oldest supported one (2.1.2), in
# an environment of its own outside the checkout that scripts/setup.sh builds from the project's
# files.
#
#   scripts/test_compat.sh [TORCH_VERSION]        (make test-compat [TORCH=2.1.2])
#
# It runs the fast test suite, a Cascade Mask R-CNN and an UperNet training run through
# tools/train.py, and every checkpoint-safety test. The first run downloads torch from PyPI (for
# torch 2.1.2 a CUDA build, which also runs on the CPU: about 2.7 GB of downloads, 5.5 GB of
# environment) and compiles mmcv against it; later runs reuse both (MMFASTERVIT_CACHE, default
# ~/.cache/mmfastervit: venvs/torch-VERSION and wheels/).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
torch_version=${1:-2.1.2}
cache=${MMFASTERVIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmfastervit}
venv=$cache/venvs/torch-$torch_version
started=$SECONDS

MMFASTERVIT_VENV=$venv MMFASTERVIT_TORCH=$torch_version bash "$root/scripts/setup.sh"
cd "$root"
python=$venv/bin/python
"$python" -c 'import sys, torch, mmcv, mmengine, mmdet, mmseg, numpy
print(f"[test-compat] Python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, "
      f"mmseg {mmseg.__version__}, numpy {numpy.__version__}")'

status=0
echo "[test-compat] the fast test suite"
"$python" -m pytest -q -m "not slow" || status=1
echo "[test-compat] detection and segmentation training, checkpoint safety"
"$python" -m pytest -q \
    tests/tools/test_det_e2e.py::test_train_saves_checkpoints_and_validates \
    tests/tools/test_seg_e2e.py::test_train_then_test_reports_miou_and_paints_predictions \
    tests/checkpoint/test_safe_load.py tests/checkpoint/test_malicious_checkpoints.py || status=1

minutes=$(( (SECONDS - started) / 60 ))
if [ $status -eq 0 ]; then
    echo "[test-compat] passed with torch $torch_version in $minutes min"
else
    echo "[test-compat] FAILED with torch $torch_version (after $minutes min)" >&2
fi
exit $status
