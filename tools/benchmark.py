"""Throughput of FasterViT backbones or whole detectors/segmentors, in inference or training.

Examples:
    # backbones, several sizes, fp32 and bf16, beside the official implementation
    python tools/benchmark.py --arch 0 --sizes 224 --batch-sizes 16 --precision fp32 bf16 \
        --compare official --reference-env ~/.cache/fastervit-ref
    # a training step (forward + backward) of the backbone beside the official one
    python tools/benchmark.py --arch 0 --batch-sizes 8 --train --compare official
    # a whole detector from its config, inference and a training iteration, beside Swin-T
    python tools/benchmark.py --config configs/det/cascade-mask-rcnn_fastervit-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py \
        --sizes 800x1333 --batch-sizes 1 --infer --train --compare-backbone swin-t
    # where a detector's test step spends its time
    python tools/benchmark.py --config CONFIG --sizes 800x1333 --breakdown
"""
import argparse
import os

import torch

from mmfastervit.analysis.benchmark import (HEADER, PRECISIONS, benchmark, breakdown,
                                            machine_description, parse_size, plot, write_csv)
from mmfastervit.engine.cpu_limit import match_threads_to_cpu_limit


def parse_args():
    parser = argparse.ArgumentParser(description='FasterViT throughput benchmark')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--arch', nargs='+', default=['0'], help='backbone variants')
    source.add_argument('--config', help='time a whole detector/segmentor from this config')
    parser.add_argument('--sizes', nargs='+', default=['224'], help='HxW or S (square)')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[16])
    parser.add_argument('--precision', nargs='+', choices=PRECISIONS, default=['fp32'])
    parser.add_argument('--infer', action='store_true', help='time inference (the default)')
    parser.add_argument('--train', action='store_true',
                        help='time a training step: forward, loss and backward (backbones: the '
                        'mean of every feature; configs: the model\'s losses on a fixed batch)')
    parser.add_argument('--compile', action='store_true', help='torch.compile (inductor, frozen)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compare', nargs='*', choices=['official', 'swin'], default=[],
                        help='backbones: also time the official FasterViT (same weights) or '
                        'mmdet Swin-T')
    parser.add_argument('--compare-backbone', choices=['swin-t'],
                        help='configs: also time the same model with mmdet\'s Swin-T backbone')
    parser.add_argument('--breakdown', action='store_true',
                        help='configs: milliseconds per part of a test step (backbone, neck, '
                        'heads, post-processing)')
    parser.add_argument('--reference-env', default=os.path.expanduser('~/.cache/fastervit-ref'),
                        help='virtualenv holding the official `fastervit` package')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int,
                        help='torch CPU threads (default: torch\'s, at most the cgroup CPU limit)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--out', default='work_dirs/benchmark', help='folder for CSV and plot')
    args = parser.parse_args()
    if args.config is None and (args.compare_backbone or args.breakdown):
        parser.error('--compare-backbone and --breakdown need --config')
    if args.config is not None and args.compare:
        parser.error('--compare is for backbones; with --config use --compare-backbone')
    return args


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        match_threads_to_cpu_limit()
    print(f'device {args.device}: {machine_description(args.device)}')
    if args.breakdown:
        for height, width in map(parse_size, args.sizes):
            for swin in [False] + ([True] if args.compare_backbone else []):
                parts = breakdown(args.config, height, width, args.device, args.precision[0],
                                  args.repeats, swin=swin)
                print(f'{"Swin-T" if swin else "ours"} {height}x{width}, ms per image:')
                for name, ms in parts.items():
                    print(f'  {name:<32} {ms:10.1f}  {100 * ms / parts["total"]:5.1f} %')
        return
    modes = [mode for mode, wanted in (('infer', args.infer or not args.train),
                                       ('train', args.train)) if wanted]
    compare = list(args.compare) + (['swin'] if args.compare_backbone else [])
    print(HEADER)
    results = benchmark(
        archs=args.arch, config=args.config, sizes=[parse_size(s) for s in args.sizes],
        batch_sizes=args.batch_sizes, precisions=args.precision, modes=modes,
        compile=args.compile, channels_last=args.channels_last, compare=compare,
        reference_env=args.reference_env, device=args.device, warmup=args.warmup,
        repeats=args.repeats)
    os.makedirs(args.out, exist_ok=True)
    write_csv(results, os.path.join(args.out, 'benchmark.csv'))
    plot(results, os.path.join(args.out, 'benchmark.png'))
    print(f'wrote {args.out}/benchmark.csv and {args.out}/benchmark.png')


if __name__ == '__main__':
    main()
