"""Deterministic synthetic datasets in the COCO and ADE20K layouts, for CPU demos and tests."""
from .synthetic_ade import ADE_SCENE_CLASSES, generate_ade
from .synthetic_coco import SHAPE_CLASSES, generate_coco

__all__ = ['ADE_SCENE_CLASSES', 'SHAPE_CLASSES', 'generate_ade', 'generate_coco']
