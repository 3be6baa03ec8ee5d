#!/usr/bin/env bash
# Cascade Mask R-CNN + FasterViT-0 on a generated toy COCO dataset of shapes, on the CPU: generate the
# dataset (once), train from scratch, evaluate the box and mask mAP (COCO metric) with tools/test.py,
# and draw one overview picture: validation images with their ground truth beside the predictions,
# above the training loss curve. Ends by printing the time taken, the CPU, the metrics and where the
# picture is.
#
#   bash scripts/demo_det.sh        (make demo sets the environment up first)
#
# Environment: PYTHON (default .venv/bin/python), DATA_DIR (data/toy_coco_upright), WORK_DIR
# (work_dirs/demo_det/<date>_<time>, a new one per run; a WORK_DIR given must be new or empty),
# MAX_ITERS (the config's schedule).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
source scripts/demo_common.sh
# Named for its upright shapes: the rotated shapes of data/toy_coco, which earlier versions of the
# demo generated, take the recipe about twice as many iterations to learn.
data_dir=${DATA_DIR:-data/toy_coco_upright}
work_dir=$(new_work_dir "${WORK_DIR:-work_dirs/demo_det/$(date +%Y%m%d_%H%M%S)}")
config=configs/det/toy/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py
show_dir=$work_dir/predictions
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
    "$python" tools/dataset/make_toy_coco.py --out "$data_dir" --num-train 128 --num-val 64 \
        --min-side 128 --max-side 192 --max-objects 4 --object-size 0.1 0.25 --background plain \
        --upright
fi

log "training $config (CPU)"
train_and_test "$config" "$work_dir" "${data_options[@]}" -- --show-dir "$show_dir" \
    --out "$work_dir/predictions.pkl"

metric() { sed -n "s/.*Iter(test).* coco\/$1: \([0-9.-]*\).*/\1/p" "$test_log" | tail -n 1; }
if [ -z "$(metric bbox_mAP)" ]; then
    echo "[demo-det] ERROR: no box mAP in the test output ($test_log)" >&2
    exit 1
fi
draw_overview "$show_dir" "$work_dir" \
    "box mAP $(metric bbox_mAP), mask mAP $(metric segm_mAP) on the toy validation set"

log "done"
print_run_summary
echo "  predictions: $work_dir/predictions.pkl, painted images under $show_dir"
echo "  COCO metrics on the toy validation set:"
echo "           mAP     AP50    AP75"
echo "    box    $(metric bbox_mAP)  $(metric bbox_mAP_50)  $(metric bbox_mAP_75)"
echo "    mask   $(metric segm_mAP)  $(metric segm_mAP_50)  $(metric segm_mAP_75)"
