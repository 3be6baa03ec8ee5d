"""Parameters and FLOPs of FasterViT backbones, or of a whole detector/segmentor from a config.

    python tools/get_flops.py --arch 0 1 2 3 4 5 6          # table at 224x224 beside the paper
    python tools/get_flops.py --arch 2 --shape 512 512
    python tools/get_flops.py --config configs/seg/upernet_fastervit-2_8xb2-160k_ade20k-512x512.py --shape 512 512
"""
import argparse

from mmfastervit.analysis.flops import backbone_table, model_flops


def main():
    parser = argparse.ArgumentParser(description='FasterViT parameters and FLOPs')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--arch', nargs='+', default=['0', '1', '2', '3', '4', '5', '6'])
    source.add_argument('--config', help='a detector/segmentor config (random weights)')
    parser.add_argument('--shape', nargs=2, type=int, default=[224, 224], metavar=('H', 'W'))
    args = parser.parse_args()
    height, width = args.shape
    if args.config:
        flops, params = model_flops(args.config, height, width)
        print(f'{args.config}\ninput {height}x{width}: {params / 1e6:.2f} M parameters, '
              f'{flops / 1e9:.1f} GFLOPs (network without post-processing)')
        return
    print(f'input {height}x{width} (backbone without classifier)')
    print(f'{"arch":<10} {"params (M)":>10} {"GFLOPs":>8} {"paper GFLOPs":>13}')
    for row in backbone_table(args.arch, height, width):
        paper = f'{row["paper_gflops"]:.1f}' if row['paper_gflops'] else '-'
        print(f'{row["arch"]:<10} {row["params_m"]:>10.2f} {row["gflops"]:>8.2f} {paper:>13}')


if __name__ == '__main__':
    main()
