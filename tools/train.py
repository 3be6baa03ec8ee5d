"""Train a detector or segmentor from an MMDetection or MMSegmentation config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]] [--amp] [--auto-scale-lr]
"""
import argparse

import torch

import mmfastervit  # noqa: F401  (registers the backbone and the optimizer constructors)
from mmfastervit.engine.runner_utils import (add_common_args, build_runner, close_process_group,
                                             load_config, remove_interrupted_saves)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model from a config')
    parser.add_argument('config', help='train config file')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume from this checkpoint, or without a path from the latest checkpoint in the '
        'work directory')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (CUDA only)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual over the base batch size of auto_scale_lr')
    add_common_args(parser)
    args = parser.parse_args()
    if args.amp and not torch.cuda.is_available():
        parser.error('--amp needs a CUDA GPU; this machine has none')
    return args


def main() -> None:
    args = parse_args()
    cfg = load_config(args)

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    splits = ('train', 'val') if cfg.get('val_cfg') else ('train', )
    runner = build_runner(cfg, check_splits=splits)
    if cfg.resume:
        remove_interrupted_saves(cfg)
    runner.train()
    close_process_group()


if __name__ == '__main__':
    main()
