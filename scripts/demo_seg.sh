#!/usr/bin/env bash
# UperNet + FasterViT-0 on a generated toy ADE20K, on the CPU: generate the dataset (once), train from
# scratch, evaluate the mIoU with tools/test.py, and draw one overview picture: validation images
# with their true label map beside the predicted one, above the training loss curve. Ends by
# printing the time taken, the CPU, the mIoU and where the picture is.
#
#   bash scripts/demo_seg.sh        (make demo-seg sets the environment up first)
#
# Environment: PYTHON (default .venv/bin/python), DATA_DIR (data/toy_ade), WORK_DIR
# (work_dirs/demo_seg/<date>_<time>, a new one per run; a WORK_DIR given must be new or empty),
# MAX_ITERS (the config's schedule).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
source scripts/demo_common.sh
data_dir=${DATA_DIR:-data/toy_ade}
work_dir=$(new_work_dir "${WORK_DIR:-work_dirs/demo_seg/$(date +%Y%m%d_%H%M%S)}")
config=configs/seg/toy/upernet_fastervit-0_toy-ade-224x224.py
show_dir=$work_dir/predictions
data_options=(
    "train_dataloader.dataset.data_root=$data_dir"
    "val_dataloader.dataset.data_root=$data_dir"
    "test_dataloader.dataset.data_root=$data_dir"
)
log() { printf '\n[demo-seg] %s\n' "$*"; }

start=$SECONDS
if [ -d "$data_dir/images/training" ]; then
    log "using the toy ADE20K in $data_dir"
else
    log "generating a toy ADE20K in $data_dir"
    "$python" tools/dataset/make_toy_ade.py --out "$data_dir"
fi

log "training $config (CPU)"
train_and_test "$config" "$work_dir" "${data_options[@]}" -- --show-dir "$show_dir"

miou=$(sed -n 's/.*Iter(test).*mIoU: \([0-9.]*\).*/\1/p' "$test_log" | tail -n 1)
if [ -z "$miou" ]; then
    echo "[demo-seg] ERROR: no mIoU in the test output ($test_log)" >&2
    exit 1
fi
draw_overview "$show_dir" "$work_dir" "mIoU $miou on the toy validation set"

log "done"
print_run_summary
echo "  painted images (ground truth | prediction) under $show_dir"
echo "  mIoU on the toy ADE20K validation set: $miou"
