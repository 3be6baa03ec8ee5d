from .hooks import ResumeRandomStateHook
from .layer_decay_constructor import FasterViTLayerDecayOptimizerConstructor, get_layer_id

__all__ = ['FasterViTLayerDecayOptimizerConstructor', 'ResumeRandomStateHook', 'get_layer_id']
