from .layer_decay_constructor import FasterViTLayerDecayOptimizerConstructor, get_layer_id

__all__ = ['FasterViTLayerDecayOptimizerConstructor', 'get_layer_id']
