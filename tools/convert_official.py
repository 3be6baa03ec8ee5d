"""Convert an official FasterViT checkpoint (``.pth.tar``) into this package's naming.

    python tools/convert_official.py fastervit_2_224_1k.pth.tar fastervit-2_backbone.pth
    python tools/convert_official.py fastervit_2_224_1k.pth.tar fastervit-2_det-init.pth --backbone-prefix
    python tools/convert_official.py DINO_4scale_faster_vit_4_21k_224_ms_coco.pth dino.pth \
        --config configs/det/dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py

The output is a plain state dict (``{'state_dict': ...}``) of the backbone weights, loadable with
``init_cfg=dict(type='Pretrained', checkpoint=OUT)``; with ``--backbone-prefix`` the keys start with
``backbone.`` so that a detector or segmentor can take it as ``load_from``. ``--arch`` checks the
weights against a variant first. The official DINO detector becomes a checkpoint of MMDetection's
DINO for the 80 COCO classes (with their names, for MMDetection's inferencers); ``--config`` checks
it against the detector a config builds first. The input is read with the package's safe loader.
"""
import argparse
import os

import torch

from mmfastervit.checkpoint import safe_torch_load
from mmfastervit.checkpoint.official import (check_state_dict, convert_official_state_dict,
                                             extract_state_dict, is_official)
from mmfastervit.checkpoint.official_dino import (CLASS_DEPENDENT_PREFIXES,
                                                  convert_official_dino_state_dict, fit_to_model,
                                                  is_official_dino)
from mmfastervit.models.fastervit import FasterViT


def convert_dino(state: dict, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from mmdet.datasets import CocoDataset
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    if args.backbone_prefix or args.arch:
        parser.error(f'{args.src} is a whole DINO detector: --backbone-prefix and --arch apply to '
                     f'backbone checkpoints (check it with --config)')
    converted = convert_official_dino_state_dict(state)
    if args.config:
        cfg = Config.fromfile(args.config)
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        cfg.model.backbone.init_cfg = None
        with torch.device('meta'):
            model = MODELS.build(cfg.model)
        converted = fit_to_model(model, converted, args.src)
    classes_kept = any(k.startswith(CLASS_DEPENDENT_PREFIXES) for k in converted)
    meta = {'dataset_meta': dict(CocoDataset.METAINFO)} if classes_kept else {}
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    torch.save({'state_dict': converted, 'meta': meta}, args.dst)
    print(f'wrote {len(converted)} tensors of MMDetection\'s DINO to {args.dst} (dropped the '
          f'derived positional buffers and the official training state)')


def main():
    parser = argparse.ArgumentParser(description='Convert an official FasterViT checkpoint')
    parser.add_argument('src', help='official .pth.tar')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--backbone-prefix', action='store_true',
                        help='prefix keys with "backbone." (for a detector/segmentor load_from)')
    parser.add_argument('--arch', help='check that the weights fit this FasterViT variant')
    parser.add_argument('--config', help='official DINO checkpoints: check that the weights fit '
                        'the detector this config builds')
    args = parser.parse_args()

    state = extract_state_dict(safe_torch_load(args.src, map_location='cpu'), source=args.src)
    if is_official_dino(state):
        convert_dino(state, args, parser)
        return
    if args.config:
        parser.error('--config applies to official DINO detector checkpoints')
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
