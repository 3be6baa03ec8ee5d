"""The ImageNet evaluation dataset and its transforms, and deterministic synthetic datasets in the
COCO and ADE20K layouts for CPU demos and tests."""
from .imagenet import ImageNet, imagenet_classes
from .synthetic_ade import ADE_SCENE_CLASSES, generate_ade
from .synthetic_coco import SHAPE_CLASSES, generate_coco
from .transforms import PackClsInputs, ResizeShortSide

__all__ = [
    'ADE_SCENE_CLASSES', 'ImageNet', 'PackClsInputs', 'ResizeShortSide', 'SHAPE_CLASSES',
    'generate_ade', 'generate_coco', 'imagenet_classes'
]
