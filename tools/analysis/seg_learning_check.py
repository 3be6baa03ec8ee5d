"""Check that a segmentation training run learned something: the test-set mIoU of a trained
checkpoint against that of the same model freshly initialised, as training starts.

    python tools/analysis/seg_learning_check.py CONFIG CHECKPOINT [--min-gain POINTS]
        [--work-dir DIR] [--cfg-options KEY=VALUE ...]

Prints both mIoUs and exits with status 1 when the trained one is not at least ``--min-gain`` points
higher.
"""
import argparse
import sys

from typing import Optional

import mmfastervit  # noqa: F401  (registers the backbone)
from mmfastervit.engine.runner_utils import add_common_args, evaluate_checkpoint, load_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Compare the mIoU of a trained and an untrained model')
    parser.add_argument('config', help='config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument(
        '--min-gain',
        type=float,
        default=10.0,
        help='mIoU points the trained model must gain over the untrained one')
    add_common_args(parser)
    return parser.parse_args()


def test_miou(args: argparse.Namespace, checkpoint: Optional[str] = None) -> float:
    """Test-set mIoU of the config's model with ``checkpoint`` loaded, or as initialised."""
    return evaluate_checkpoint(load_config(args), checkpoint)['mIoU']


def main() -> None:
    args = parse_args()
    untrained = test_miou(args)
    trained = test_miou(args, args.checkpoint)
    gain = trained - untrained
    print(f'mIoU untrained: {untrained:.2f}')
    print(f'mIoU trained:   {trained:.2f}')
    print(f'gain:           {gain:+.2f} points (required: {args.min_gain:+.2f})')
    if gain < args.min_gain:
        print('FAILED: training did not improve the mIoU enough')
        sys.exit(1)
    print('OK: the model learned')


if __name__ == '__main__':
    main()
