from .classifier import FasterViTClassifier
from .fastervit import ARCH_SETTINGS, FasterViT, LayerNorm2d

__all__ = ['ARCH_SETTINGS', 'FasterViT', 'FasterViTClassifier', 'LayerNorm2d']
