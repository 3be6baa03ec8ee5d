"""Throughput of FasterViT backbones or whole detectors/segmentors.

Examples:
    # backbones, several sizes, fp32 and bf16, beside the official implementation
    python tools/benchmark.py --arch 0 --sizes 224 --batch-sizes 16 --precision fp32 bf16 \
        --compare official --reference-env ~/.cache/fastervit-ref
    # a whole detector from its config
    python tools/benchmark.py --config configs/det/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_ms-crop-3x_coco.py \
        --sizes 800x1333 --batch-sizes 1
"""
import argparse
import os

import torch

from mmfastervit.analysis.benchmark import (HEADER, PRECISIONS, benchmark, parse_size, plot,
                                            write_csv)


def parse_args():
    parser = argparse.ArgumentParser(description='FasterViT throughput benchmark')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--arch', nargs='+', default=['0'], help='backbone variants')
    source.add_argument('--config', help='time a whole detector/segmentor from this config')
    parser.add_argument('--sizes', nargs='+', default=['224'], help='HxW or S (square)')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[16])
    parser.add_argument('--precision', nargs='+', choices=PRECISIONS, default=['fp32'])
    parser.add_argument('--compile', action='store_true', help='torch.compile (inductor, frozen)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compare', nargs='*', choices=['official', 'swin'], default=[],
                        help='also time the official FasterViT (same weights) or mmdet Swin-T')
    parser.add_argument('--reference-env', default=os.path.expanduser('~/.cache/fastervit-ref'),
                        help='virtualenv holding the official `fastervit` package')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--out', default='work_dirs/benchmark', help='folder for CSV and plot')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads')
    print(HEADER)
    results = benchmark(
        archs=args.arch, config=args.config, sizes=[parse_size(s) for s in args.sizes],
        batch_sizes=args.batch_sizes, precisions=args.precision, compile=args.compile,
        channels_last=args.channels_last, compare=args.compare,
        reference_env=args.reference_env, device=args.device, warmup=args.warmup,
        repeats=args.repeats)
    os.makedirs(args.out, exist_ok=True)
    write_csv(results, os.path.join(args.out, 'benchmark.csv'))
    plot(results, os.path.join(args.out, 'benchmark.png'))
    print(f'wrote {args.out}/benchmark.csv and {args.out}/benchmark.png')


if __name__ == '__main__':
    main()
