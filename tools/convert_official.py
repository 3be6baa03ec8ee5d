"""Convert an official FasterViT checkpoint (``.pth.tar``) into this package's naming.

    python tools/convert_official.py fastervit_2_224_1k.pth.tar fastervit-2_backbone.pth
    python tools/convert_official.py fastervit_2_224_1k.pth.tar fastervit-2_det-init.pth --backbone-prefix

The output is a plain state dict (``{'state_dict': ...}``) of the backbone weights, loadable with
``init_cfg=dict(type='Pretrained', checkpoint=OUT)``; with ``--backbone-prefix`` the keys start with
``backbone.`` so that a detector or segmentor can take it as ``load_from``. ``--arch`` checks the
weights against a variant first. The input is read with the package's safe loader.
"""
import argparse
import os

import torch

from mmfastervit.checkpoint import safe_torch_load
from mmfastervit.checkpoint.official import (check_state_dict, convert_official_state_dict,
                                             extract_state_dict, is_official)
from mmfastervit.models.fastervit import FasterViT


def main():
    parser = argparse.ArgumentParser(description='Convert an official FasterViT checkpoint')
    parser.add_argument('src', help='official .pth.tar')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--backbone-prefix', action='store_true',
                        help='prefix keys with "backbone." (for a detector/segmentor load_from)')
    parser.add_argument('--arch', help='check that the weights fit this FasterViT variant')
    args = parser.parse_args()

    state = extract_state_dict(safe_torch_load(args.src, map_location='cpu'), source=args.src)
    if not is_official(state):
        raise SystemExit(f'{args.src} does not hold official FasterViT weights '
                         f'(no patch_embed./levels. keys)')
    backbone, classifier = convert_official_state_dict(state)
    if args.arch:
        with torch.device('meta'):
            model = FasterViT(arch=args.arch)
        check_state_dict(model, backbone, args.src, tuple(f'norm{i}.' for i in range(4)))
    if args.backbone_prefix:
        backbone = {f'backbone.{k}': v for k, v in backbone.items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    torch.save({'state_dict': backbone}, args.dst)
    print(f'wrote {len(backbone)} backbone tensors to {args.dst} '
          f'(dropped {len(classifier)} classifier tensors and the derived positional buffers)')


if __name__ == '__main__':
    main()
