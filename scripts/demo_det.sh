#!/usr/bin/env bash
# Cascade Mask R-CNN + FasterViT-0 on a generated toy COCO dataset of shapes, on the CPU: generate the
# dataset (once), train from scratch, evaluate the box and mask mAP (COCO metric) with tools/test.py
# and save the validation images painted with the predictions. About 13 minutes on 2 cores.
#
#   bash scripts/demo_det.sh        (make demo sets the environment up first)
#
# Environment: PYTHON (default .venv/bin/python), DATA_DIR (data/toy_coco), WORK_DIR (work_dirs/demo_det).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
data_dir=${DATA_DIR:-data/toy_coco}
work_dir=${WORK_DIR:-work_dirs/demo_det}
config=configs/det/toy/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py
# Absolute, so that the detection visualization hook does not nest it in the run's directory.
show_dir=$PWD/$work_dir/predictions
data_options=(
    "train_dataloader.dataset.data_root=$data_dir"
    "val_dataloader.dataset.data_root=$data_dir"
    "test_dataloader.dataset.data_root=$data_dir"
    "val_evaluator.ann_file=$data_dir/annotations/instances_val.json"
    "test_evaluator.ann_file=$data_dir/annotations/instances_val.json"
)
log() { printf '\n[demo-det] %s\n' "$*"; }

start=$SECONDS
if [ -f "$data_dir/annotations/instances_val.json" ]; then
    log "using the toy COCO dataset in $data_dir"
else
    log "generating a toy COCO dataset in $data_dir"
    "$python" tools/dataset/make_toy_coco.py --out "$data_dir" --num-train 128 --num-val 16
fi

log "training $config (CPU)"
"$python" tools/train.py "$config" --work-dir "$work_dir" --cfg-options "${data_options[@]}"
checkpoint=$(cat "$work_dir/last_checkpoint")

log "evaluating $checkpoint"
rm -rf "$show_dir"
test_log=$work_dir/test.log
"$python" tools/test.py "$config" "$checkpoint" --work-dir "$work_dir" --show-dir "$show_dir" \
    --out "$work_dir/predictions.pkl" --cfg-options "${data_options[@]}" 2>&1 | tee "$test_log"

metric() { sed -n "s/.*Iter(test).* coco\/$1: \([0-9.-]*\).*/\1/p" "$test_log" | tail -n 1; }
if [ -z "$(metric bbox_mAP)" ]; then
    echo "[demo-det] ERROR: no box mAP in the test output ($test_log)" >&2
    exit 1
fi
num_painted=$(find "$show_dir" -name '*.jpg' | wc -l)
log "done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
echo "  checkpoint:  $checkpoint"
echo "  predictions: $work_dir/predictions.pkl, and $num_painted painted images under $show_dir"
echo "  COCO metrics on the toy validation set:"
echo "           mAP     AP50    AP75"
echo "    box    $(metric bbox_mAP)  $(metric bbox_mAP_50)  $(metric bbox_mAP_75)"
echo "    mask   $(metric segm_mAP)  $(metric segm_mAP_50)  $(metric segm_mAP_75)"
