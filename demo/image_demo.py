"""Run a detector or a segmentor on an image (or a folder of images) and save the drawn predictions.

    python demo/image_demo.py IMAGE_OR_FOLDER CONFIG CHECKPOINT [--out-dir outputs]

Detection configs (``default_scope = 'mmdet'``) get their boxes and masks drawn by MMDetection's
``DetInferencer``, segmentation configs (``'mmseg'``) a colourised label map over the image by
MMSegmentation's ``MMSegInferencer``. The drawings are written to ``OUT_DIR/vis``.
"""
import argparse
import os.path as osp

import torch
from mmengine.config import Config, DictAction

import mmfastervit  # noqa: F401  (registers the backbone and loads checkpoints safely)
from mmfastervit.engine.runner_utils import adapt_to_cpu


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Draw the predictions of a detector or segmentor')
    parser.add_argument('inputs', help='image file or folder of images')
    parser.add_argument('config', help='detection or segmentation config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('--out-dir', default='outputs', help='where the drawings go (in vis/)')
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: lowest score of a drawn instance')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='segmentation: opacity of the label map over the image')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as key=value pairs')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.device == 'cpu':
        adapt_to_cpu(cfg)
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=cfg, weights=args.checkpoint, device=args.device,
                                   show_progress=False)
        inferencer(args.inputs, out_dir=args.out_dir, pred_score_thr=args.score_thr)
    elif scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=cfg, weights=args.checkpoint, device=args.device)
        inferencer(args.inputs, out_dir=args.out_dir, opacity=args.opacity)
    else:
        raise SystemExit(f"{args.config}: default_scope must be 'mmdet' or 'mmseg', got {scope!r}"
                         + (' (classify images with demo/classify.py)'
                            if scope == 'mmengine' else ''))
    print(f'Drawn predictions written to {osp.join(args.out_dir, "vis")}')


if __name__ == '__main__':
    main()
