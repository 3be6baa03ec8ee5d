from .hooks import ResumeRandomStateHook
from .layer_decay_constructor import FasterViTLayerDecayOptimizerConstructor, get_layer_id
from .optimizers import FusedAdamW, FusedSGD

__all__ = [
    'FasterViTLayerDecayOptimizerConstructor', 'FusedAdamW', 'FusedSGD', 'ResumeRandomStateHook',
    'get_layer_id'
]
