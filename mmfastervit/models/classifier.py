"""FasterViT with its ImageNet classification head, to evaluate and use the official checkpoints."""
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from mmengine.structures import BaseDataElement

from mmfastervit import compat
from mmfastervit.checkpoint.official import (StateDict, check_state_dict,
                                             convert_official_state_dict, extract_state_dict,
                                             is_official)
from .fastervit import NUM_STAGES, FasterViT

# ImageNet statistics of RGB images in 0-255.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class LinearClsHead(nn.Module):
    """Global average pooling and a linear classifier."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


@MODELS.register_module()
class FasterViTClassifier(BaseModel):
    """FasterViT image classifier: the last stage's features go through a BatchNorm (the backbone's
    output norm), global average pooling and a linear layer, as in the official network.

    Official ``.pth.tar`` checkpoints load as they are, through ``init_cfg=dict(type='Pretrained',
    checkpoint=...)``, ``load_from``, ``mmengine.runner.load_checkpoint`` or ``load_state_dict``:
    a load-state-dict pre-hook converts their keys. Loading is always strict: a missing, unexpected
    or misshapen weight raises :class:`~mmfastervit.checkpoint.official.CheckpointMismatchError`
    (MMEngine's loaders would only warn, and a partly loaded classifier is worthless).

    Args:
        arch (str | dict): FasterViT variant, see :class:`FasterViT`. Default: '0'.
        num_classes (int): Number of classes. Default: 1000.
        drop_path_rate (float, optional): Stochastic depth; default: the variant's.
        data_preprocessor (dict, optional): Default: ImageNet normalisation of BGR images.
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``.
    """

    def __init__(self,
                 arch: Union[str, dict] = '0',
                 num_classes: int = 1000,
                 drop_path_rate: Optional[float] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImgDataPreprocessor', mean=IMAGENET_MEAN,
                                     std=IMAGENET_STD, bgr_to_rgb=True)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.last_stage = NUM_STAGES - 1
        self.backbone = FasterViT(arch=arch, out_indices=(self.last_stage, ),
                                  drop_path_rate=drop_path_rate, norm_cfg=dict(type='BN'))
        self.head = LinearClsHead(self.backbone.out_channels[-1], num_classes)
        compat.add_load_state_dict_pre_hook(self, _prepare_state_dict)

    def convert_official(self, official: StateDict) -> StateDict:
        """An official state dict under this model's names: the official final norm is the
        backbone's output norm, its ``head`` our ``head.fc``."""
        backbone, classifier = convert_official_state_dict(official)
        renames = {'norm.': f'backbone.norm{self.last_stage}.', 'head.': 'head.fc.'}
        state = {f'backbone.{key}': value for key, value in backbone.items()}
        for key, value in classifier.items():
            prefix, name = key.split('.', 1)
            state[renames[prefix + '.'] + name] = value
        return state

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor') -> Union[torch.Tensor, Dict[str, torch.Tensor],
                                               List[BaseDataElement]]:
        """Modes: 'tensor' gives the logits, 'predict' the data samples with ``pred_score``
        (softmax) and ``pred_label``, 'loss' the cross-entropy against their ``gt_label``."""
        if mode not in ('tensor', 'predict', 'loss'):
            raise ValueError(f"mode must be 'tensor', 'predict' or 'loss', got {mode!r}")
        logits = self.head(self.backbone(inputs)[0])
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            labels = torch.cat([sample.gt_label for sample in data_samples]).to(logits.device)
            return dict(loss=F.cross_entropy(logits, labels))
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(len(logits))]
        for sample, scores in zip(data_samples, logits.softmax(dim=1)):
            sample.pred_score = scores
            sample.pred_label = scores.argmax(dim=0, keepdim=True)
        return data_samples


def _prepare_state_dict(module: FasterViTClassifier, state_dict: dict, prefix: str,
                        *args) -> None:
    """Load-state-dict pre-hook: replaces the module's entries of ``state_dict`` by its weights
    under this model's names (unwrapping a whole training checkpoint, converting official keys) and
    raises unless they fit the model exactly."""
    own_keys = [key for key in state_dict if key.startswith(prefix)]
    state = extract_state_dict({key[len(prefix):]: state_dict[key] for key in own_keys})
    if is_official(state):
        state = module.convert_official(state)
    check_state_dict(module, state, source='checkpoint')
    for key in own_keys:
        del state_dict[key]
    state_dict.update({prefix + key: value for key, value in state.items()})
