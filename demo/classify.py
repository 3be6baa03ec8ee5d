"""Classify an image with a FasterViT ImageNet checkpoint and print the top classes.

    python demo/classify.py IMAGE CHECKPOINT --arch 0
    python demo/classify.py IMAGE CHECKPOINT --config configs/cls/fastervit-0_in1k.py

``--arch`` picks the variant's config in ``configs/cls``; the image is preprocessed by the
config's test pipeline. CHECKPOINT is an official ``.pth.tar`` (path or URL) or a checkpoint of
this package.
"""
import argparse
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

import mmfastervit  # noqa: F401  (registers the classifier and loads checkpoints safely)
from mmfastervit.datasets import imagenet_classes

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'cls')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Top ImageNet classes of an image')
    parser.add_argument('image', help='image file')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    variant = parser.add_mutually_exclusive_group(required=True)
    variant.add_argument('--arch', help="FasterViT variant, e.g. '0' or '4-21k-384'")
    variant.add_argument('--config', help='classification config file')
    parser.add_argument('--topk', type=int, default=5, help='number of classes to print')
    parser.add_argument('--device', default='cpu', help="e.g. 'cpu' or 'cuda:0'")
    args = parser.parse_args()
    if args.arch is not None:
        args.config = osp.join(CONFIG_DIR, f'fastervit-{args.arch}_in1k.py')
        if not osp.isfile(args.config):
            parser.error(f'no config for arch {args.arch!r} ({args.config} does not exist)')
    return args


def classify(image: str, cfg: Config, checkpoint: str, device: str = 'cpu') -> torch.Tensor:
    """Class probabilities of ``image``."""
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    model.to(device).eval()
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    batch = pseudo_collate([pipeline(dict(img_path=image))])
    with torch.no_grad():
        return model.test_step(batch)[0].pred_score.cpu()


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    scores = classify(args.image, cfg, args.checkpoint, args.device)
    names = imagenet_classes() if len(scores) == len(imagenet_classes()) else None
    top_scores, top_labels = scores.topk(min(args.topk, len(scores)))
    for rank, (score, label) in enumerate(zip(top_scores.tolist(), top_labels.tolist()), 1):
        name = names[label] if names else f'class {label}'
        print(f'{rank}. {100 * score:6.2f}%  {name} ({label})')


if __name__ == '__main__':
    main()
