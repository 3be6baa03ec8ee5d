# Every target sets the environment up first (idempotent: about a second once done).
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo demo-seg test test-fast test-compat clean

setup:
	@bash scripts/setup.sh

## Train and evaluate Cascade Mask R-CNN + FasterViT-0 on a generated toy COCO dataset (CPU).
demo: setup
	@bash scripts/demo_det.sh

## Train and evaluate UperNet + FasterViT-0 on a generated toy ADE20K dataset (CPU).
demo-seg: setup
	@bash scripts/demo_seg.sh

## The test suite CI runs: everything, the bounded end-to-end tests included.
test: setup
	@$(PY) -m pytest -q --durations=15

## Only the fast tests (no end-to-end training runs).
test-fast: setup
	@$(PY) -m pytest -q -m "not slow"

## The tests against another torch (default: 2.1.2, the oldest supported) in an environment of its
## own outside the checkout. Not part of `test`: the first run downloads several GB and compiles mmcv.
TORCH ?= 2.1.2
test-compat:
	@bash scripts/test_compat.sh $(TORCH)

clean:
	rm -rf work_dirs data
