# What scripts/demo_det.sh and scripts/demo_seg.sh share; sourced by them once they set `python`;
# they define `log`.

# glibc's malloc gives large blocks (over a threshold of at most 32 MB) their own memory mapping,
# unmapped when the block is freed, and trims the heap's free top; the kernel then faults in and
# zeroes fresh pages for the next allocation. A training step frees and allocates such blocks every
# time (the box heads' fc weight gradients are 51 MB each), so the demos keep freed memory in the
# heap: no separate mappings, no trimming. On the 2-core development VM (trained detector, 20 to 60
# steps a run, runs alternating) a detection step took 0.845 s against 0.874 (means of 6 and 8
# runs) at the same peak memory (1.6 GB), a segmentation step 1.005 s against 1.084 (2 runs each).
# Left alone when the caller sets GLIBC_TUNABLES; other C libraries ignore it.
export GLIBC_TUNABLES=${GLIBC_TUNABLES-glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295}

# new_work_dir DIR: DIR as an absolute path (the detection visualization hook would nest a relative
# --show-dir in the run's directory), refused unless it is new or empty: every run writes its own,
# and the overview's loss curve reads every training run it finds there.
new_work_dir() {
    if [ -n "$(ls -A "$1" 2>/dev/null)" ]; then
        echo "work directory $1 is not empty: give a new WORK_DIR (runs are never mixed or deleted)" >&2
        return 1
    fi
    realpath -m "$1"
}

# Seconds as "M min SS s".
duration() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }

# train_and_test CONFIG WORK_DIR CFG_OPTION... -- TEST_OPTION...
# Train CONFIG from scratch in WORK_DIR, then evaluate its last checkpoint with tools/test.py (output
# also in $test_log). Sets checkpoint, test_log and eval_seconds (training plus evaluation).
train_and_test() {
    local config=$1 work_dir=$2
    shift 2
    local options=()
    while [ "$1" != -- ]; do options+=("$1"); shift; done
    shift
    if [ -n "${MAX_ITERS:-}" ]; then
        # The loss is logged every ceil(MAX_ITERS / 30) iterations, so that a run of any length has
        # a loss curve to draw (the configs log every 10, which a run of fewer never reaches).
        options+=("train_cfg.max_iters=$MAX_ITERS" "default_hooks.checkpoint.interval=$MAX_ITERS"
                  "default_hooks.logger.interval=$(((MAX_ITERS + 29) / 30))")
    fi
    local started=$SECONDS
    # No validation while training: the final checkpoint is evaluated right after, once.
    "$python" tools/train.py "$config" --work-dir "$work_dir" \
        --cfg-options "${options[@]}" val_cfg=None val_dataloader=None val_evaluator=None
    checkpoint=$(cat "$work_dir/last_checkpoint")
    log "evaluating $checkpoint"
    test_log=$work_dir/test.log
    "$python" tools/test.py "$config" "$checkpoint" --work-dir "$work_dir" "$@" \
        --cfg-options "${options[@]}" 2>&1 | tee "$test_log"
    eval_seconds=$((SECONDS - started))
}

# draw_overview PAINTED_DIR WORK_DIR TITLE: $work_dir/overview.png and $work_dir/loss_curve.png.
draw_overview() {
    "$python" tools/analysis/draw_overview.py "$1" "$2" --out "$2/overview.png" \
        --loss-curve "$2/loss_curve.png" --title "$3 (left: ground truth, right: prediction)"
    overview=$2/overview.png
}

# The time taken (training + evaluation, and all of it from $start), the CPU and the picture.
print_run_summary() {
    echo "  time:        $(duration "$eval_seconds") training and evaluation;" \
        "$(duration $((SECONDS - start))) with the data and the overview"
    echo "  CPU:         $("$python" -c 'from mmfastervit.analysis.benchmark import machine_description
from mmfastervit.compat import cpu_capability
print(f"{machine_description()}; ATen kernels: {cpu_capability()}")')"
    echo "  checkpoint:  $checkpoint"
    echo "  overview:    $overview (training loss alone: ${overview%/*}/loss_curve.png)"
}
