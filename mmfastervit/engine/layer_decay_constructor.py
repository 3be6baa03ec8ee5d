"""Layer-wise learning rate decay for models with a FasterViT backbone.

MMDetection's ``LearningRateDecayOptimizerConstructor`` only knows ConvNeXt parameter names; this
one reads FasterViT's.
"""
import re
from typing import List, Optional, Sequence

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from ..models.fastervit import FasterViT

DECAY_TYPES = ('layer_wise', 'stage_wise')
_OUTPUT_NORM = re.compile(r'norm(\d+)$')


def get_layer_id(param_name: str, depths: Sequence[int], decay_type: str = 'layer_wise') -> int:
    """Layer id of a FasterViT parameter, named relative to the backbone.

    The stem is layer 0. ``layer_wise``: block ``j`` of stage ``i`` is layer
    ``1 + sum(depths[:i]) + j``; ``stage_wise``: all of stage ``i`` is layer ``i + 1``. A stage's
    carrier-token initialiser goes with its first block, the downsampler that ends stage ``i``
    with the first block of stage ``i + 1`` (it computes that stage's input), and the output norm
    ``norm{i}`` with the last block of stage ``i``.
    """
    if decay_type not in DECAY_TYPES:
        raise ValueError(f'decay_type must be one of {DECAY_TYPES}, got {decay_type!r}')
    parts = param_name.split('.')
    output_norm = _OUTPUT_NORM.match(parts[0])
    if parts[0] == 'stem':
        return 0
    if output_norm:
        stage = int(output_norm.group(1))
        block = depths[stage] - 1
    elif parts[0] == 'stages' and len(parts) > 3 and parts[2] == 'blocks':
        stage, block = int(parts[1]), int(parts[3])
    elif parts[0] == 'stages' and len(parts) > 2 and parts[2] == 'carrier_init':
        stage, block = int(parts[1]), 0
    elif parts[0] == 'stages' and len(parts) > 2 and parts[2] == 'downsample':
        stage, block = int(parts[1]) + 1, 0
    else:
        raise ValueError(f'not a FasterViT parameter name: {param_name!r}')
    if decay_type == 'stage_wise':
        return stage + 1
    return 1 + sum(depths[:stage]) + block


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FasterViTLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Scale the learning rate of each FasterViT layer by ``decay_rate ** (num_layers + 1 - id)``.

    Layer ids come from :func:`get_layer_id`; all parameters outside the backbone (neck, heads)
    are layer ``num_layers + 1`` and keep the base learning rate. The scale multiplies whatever
    learning rate the default rules give (``custom_keys`` ``lr_mult``, ``bias_lr_mult``, ...), and
    weight decay follows the default rules unchanged (``norm_decay_mult``, ``custom_keys``
    ``decay_mult``), so the usual FasterViT no-decay settings keep working.

    ``paramwise_cfg`` keys, besides those of :class:`DefaultOptimWrapperConstructor`:

    - ``decay_rate`` (float, required): learning rate ratio between consecutive layers.
    - ``decay_type`` (str): ``'layer_wise'`` (one layer per block, the default) or
      ``'stage_wise'`` (one layer per stage).
    - ``num_layers`` (int, optional): the largest backbone layer id, by default the backbone's
      own (its number of blocks, or 4 stages). A larger value scales the whole backbone down by
      ``decay_rate`` per extra layer.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if 'decay_rate' not in self.paramwise_cfg:
            raise ValueError(f'{type(self).__name__} needs paramwise_cfg.decay_rate')
        self.decay_rate = self.paramwise_cfg['decay_rate']
        self.decay_type = self.paramwise_cfg.get('decay_type', 'layer_wise')
        if self.decay_type not in DECAY_TYPES:
            raise ValueError(f'decay_type must be one of {DECAY_TYPES}, got {self.decay_type!r}')
        self.num_layers = self.paramwise_cfg.get('num_layers')

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        if prefix:
            # The parent class recurses into submodules through this method; only the call on the
            # whole model (empty prefix) rescales, once all groups exist.
            super().add_params(params, module, prefix, **kwargs)
            return
        backbone = getattr(module, 'backbone', None)
        if not isinstance(backbone, FasterViT):
            raise TypeError(f'{type(self).__name__} needs a model whose backbone is FasterViT, '
                            f'got {type(backbone).__name__}')
        depths = [len(stage.blocks) for stage in backbone.stages]
        backbone_layers = sum(depths) if self.decay_type == 'layer_wise' else len(depths)
        num_layers = backbone_layers if self.num_layers is None else self.num_layers
        if num_layers < backbone_layers:
            raise ValueError(f'num_layers={num_layers} is below the {backbone_layers} '
                             f'{self.decay_type} layers of this FasterViT')

        super().add_params(params, module, prefix, **kwargs)
        names = {id(param): name for name, param in module.named_parameters()}
        for group in params:
            name = names[id(group['params'][0])]
            if name.startswith('backbone.'):
                layer_id = get_layer_id(name[len('backbone.'):], depths, self.decay_type)
            else:
                layer_id = num_layers + 1
            scale = self.decay_rate**(num_layers + 1 - layer_id)
            group['lr'] = group.get('lr', self.base_lr) * scale
        print_log(
            f'{self.decay_type} lr decay {self.decay_rate} over {num_layers} backbone layers: '
            f'the stem learns at {self.decay_rate**(num_layers + 1):.3g} x lr',
            logger='current')
