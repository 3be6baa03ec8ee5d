"""Check that a detection training run learned something: the test-set box and mask mAP of a trained
checkpoint against those of the same model freshly initialised, as training starts.

    python tools/analysis/det_learning_check.py CONFIG CHECKPOINT [--min-gain AP]
        [--work-dir DIR] [--cfg-options KEY=VALUE ...]

Prints both and exits with status 1 when the trained box mAP is not at least ``--min-gain`` higher.
"""
import argparse
import sys
from typing import Optional

import mmfastervit  # noqa: F401  (registers the backbone)
from mmfastervit.engine.runner_utils import add_common_args, evaluate_checkpoint, load_config

METRICS = {'coco/bbox_mAP': 'box mAP', 'coco/bbox_mAP_50': 'box AP50', 'coco/segm_mAP': 'mask mAP'}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Compare the mAP of a trained and an untrained detector')
    parser.add_argument('config', help='config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument(
        '--min-gain', type=float, default=0.05, help='box mAP (0-1) the training must add')
    add_common_args(parser)
    return parser.parse_args()


def coco_metrics(args: argparse.Namespace, checkpoint: Optional[str] = None) -> dict:
    """The metrics of :data:`METRICS` for ``checkpoint``, or for the untrained model."""
    metrics = evaluate_checkpoint(load_config(args), checkpoint)
    # CocoMetric reports nothing for a model without a single detection: that is 0 AP.
    return {key: metrics.get(key, 0.0) for key in METRICS}


def main() -> None:
    args = parse_args()
    untrained = coco_metrics(args)
    trained = coco_metrics(args, args.checkpoint)
    print(f'{"":10} {"untrained":>10} {"trained":>10}')
    for key, name in METRICS.items():
        print(f'{name:10} {untrained[key]:10.3f} {trained[key]:10.3f}')
    gain = trained['coco/bbox_mAP'] - untrained['coco/bbox_mAP']
    print(f'box mAP gain: {gain:+.3f} (required: {args.min_gain:+.3f})')
    if gain < args.min_gain:
        print('FAILED: training did not improve the box mAP enough')
        sys.exit(1)
    print('OK: the detector learned')


if __name__ == '__main__':
    main()
