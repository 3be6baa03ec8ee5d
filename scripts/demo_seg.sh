#!/usr/bin/env bash
# UperNet + FasterViT-0 on a generated toy ADE20K, on the CPU: generate the dataset (once), train
# from scratch, evaluate the mIoU with tools/test.py and save the validation images painted with the
# ground truth and the predictions. About 8 minutes on 2 cores.
#
#   bash scripts/demo_seg.sh        (make demo-seg sets the environment up first)
#
# Environment: PYTHON (default .venv/bin/python), DATA_DIR (data/toy_ade),
# WORK_DIR (work_dirs/demo_seg).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
data_dir=${DATA_DIR:-data/toy_ade}
work_dir=${WORK_DIR:-work_dirs/demo_seg}
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
"$python" tools/train.py "$config" --work-dir "$work_dir" --cfg-options "${data_options[@]}"
checkpoint=$(cat "$work_dir/last_checkpoint")

log "evaluating $checkpoint"
rm -rf "$show_dir"
test_log=$work_dir/test.log
"$python" tools/test.py "$config" "$checkpoint" --work-dir "$work_dir" --show-dir "$show_dir" \
    --cfg-options "${data_options[@]}" 2>&1 | tee "$test_log"

miou=$(sed -n 's/.*Iter(test).*mIoU: \([0-9.]*\).*/\1/p' "$test_log" | tail -n 1)
if [ -z "$miou" ]; then
    echo "[demo-seg] ERROR: no mIoU in the test output ($test_log)" >&2
    exit 1
fi
num_painted=$(find "$show_dir" -name '*.png' | wc -l)
log "done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
echo "  checkpoint:  $checkpoint"
echo "  predictions: $num_painted images (ground truth | prediction) under $show_dir"
echo "  mIoU on the toy ADE20K validation set: $miou"
