"""Test (and evaluate) a checkpoint with an MMDetection or MMSegmentation config.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir DIR] [--tta]
"""
import argparse

import mmfastervit  # noqa: F401  (registers the backbone)
from mmfastervit.engine.runner_utils import (add_common_args, add_dump_metric, build_runner,
                                             close_process_group, enable_tta,
                                             enable_visualization, load_config)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='also dump the predictions to this pickle file')
    parser.add_argument('--show', action='store_true', help='show the predictions in a window')
    parser.add_argument(
        '--show-dir',
        help='save images painted with the predictions here (detection: inside the run '
        'directory under the work directory; segmentation: this directory)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds each shown image stays up')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    add_common_args(parser)
    args = parser.parse_args()
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must name a .pkl or .pickle file, got {args.out!r}')
    return args


def main() -> None:
    args = parse_args()
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show, args.show_dir, args.wait_time)
    if args.tta:
        enable_tta(cfg)

    runner = build_runner(cfg, check_splits=('test', ))
    if args.out is not None:
        add_dump_metric(runner, args.out)
    runner.test()
    close_process_group()


if __name__ == '__main__':
    main()
