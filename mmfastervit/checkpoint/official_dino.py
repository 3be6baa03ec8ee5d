"""The official FasterViT DINO detector on MMDetection's ``DINO``.

The FasterViT authors published one detection checkpoint, DINO-4scale with a FasterViT-4-21K-224
backbone (``DINO_4scale_faster_vit_4_21k_224_ms_coco.pth``), trained with IDEA-Research's DINO
codebase. It is that codebase's training dict: the weights under ``model``, and ``optimizer``,
``lr_scheduler``, ``epoch`` and ``args`` (an ``argparse.Namespace`` of plain values), all of which
the package's safe loader reads. Its weights map onto MMDetection's DINO with this package's
backbone as follows:

- ``backbone.0.*``: the FasterViT backbone, renamed as ImageNet checkpoints are
  (:mod:`.official`); its frozen positional buffers are derived data and dropped;
- ``input_proj.{i}``: the neck, a ``ChannelMapper`` whose convolutions have a bias: the 1x1
  convolutions of the backbone levels, then the stride-2 3x3 ones of the extra levels;
- encoder and decoder layers: renamed (``norm1``, ``linear1``... become ``norms``, ``ffn``);
- prediction layers: the official model shares one classifier and one box MLP among its decoder
  layers (so they appear under ``class_embed.{i}``, ``bbox_embed.{i}`` and again under
  ``transformer.decoder``); MMDetection's head has one per decoder layer, and each gets a copy.
  The encoder's own (``transformer.enc_out_*``) become the head's last branches;
- classes: the official classifiers have 91 outputs indexed by COCO category id (ids that are no
  category included) and the denoising label book 92 rows; MMDetection's have the 80 categories in
  id order, so row ``COCO_CATEGORY_IDS[i]`` becomes row ``i``.

A tensor that fits none of these is an error that names it; nothing is dropped silently.
"""
import logging
import re
from typing import Optional, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .official import (CheckpointMismatchError, StateDict, check_state_dict,
                       convert_official_state_dict, extract_state_dict, first_rename,
                       summarise_keys)

# The 80 COCO category ids, in the order of MMDetection's COCO classes.
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                     24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47,
                     48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70,
                     72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
OFFICIAL_CLASS_IDS = 91  # ids 0..90: the official heads' outputs
OFFICIAL_LABEL_BOOK = OFFICIAL_CLASS_IDS + 1  # denoising label embeddings
# Our weights that depend on the classes: re-initialised when fine-tuning for other classes.
CLASS_DEPENDENT_PREFIXES = ('bbox_head.cls_branches.', 'dn_query_generator.label_embedding.')

# Sub-modules of the official encoder and decoder layers -> MMDetection's. The decoder runs
# self-attention (followed by norm2), cross-attention (norm1), then the feed-forward net (norm3).
_ENCODER_LAYER = {'self_attn': 'self_attn', 'norm1': 'norms.0', 'linear1': 'ffn.layers.0.0',
                  'linear2': 'ffn.layers.1', 'norm2': 'norms.1'}
_DECODER_LAYER = {'self_attn': 'self_attn.attn', 'norm2': 'norms.0', 'cross_attn': 'cross_attn',
                  'norm1': 'norms.1', 'linear1': 'ffn.layers.0.0', 'linear2': 'ffn.layers.1',
                  'norm3': 'norms.2'}
_LAYER_KEY = re.compile(r'^transformer\.(encoder|decoder)\.layers\.(\d+)\.([a-z_0-9]+)\.(.+)$')
_RENAMES = [
    (r'^transformer\.level_embed$', 'level_embed'),
    (r'^transformer\.tgt_embed\.', 'query_embedding.'),
    (r'^transformer\.enc_output\.', 'memory_trans_fc.'),
    (r'^transformer\.enc_output_norm\.', 'memory_trans_norm.'),
    (r'^transformer\.decoder\.(norm|ref_point_head)\.', r'decoder.\1.'),
]
# The official MLP (``layers.{j}``, ReLU in between) is MMDetection's Sequential(Linear, ReLU, ...).
_BOX_MLP = re.compile(
    r'^(?:bbox_embed\.(\d+)|transformer\.enc_out_bbox_embed)\.layers\.(\d+)\.(.+)$')
_CLASSIFIER = re.compile(r'^(?:class_embed\.(\d+)|transformer\.enc_out_class_embed)\.(.+)$')
_SHARED_ALIAS = re.compile(r'^transformer\.decoder\.((?:class_embed|bbox_embed)\..+)$')
_INPUT_PROJ = re.compile(r'^input_proj\.(\d+)\.([01])\.(.+)$')
_LABEL_BOOK = 'label_enc.weight'


def is_official_dino(state: StateDict) -> bool:
    """Whether ``state`` holds the weights of an official (DINO-codebase) FasterViT detector."""
    return (any(k.startswith('transformer.') for k in state)
            and any(k.startswith('backbone.0.') for k in state))


def _coco_rows(key: str, tensor: torch.Tensor, official_rows: int) -> torch.Tensor:
    if tensor.shape[0] != official_rows:
        raise CheckpointMismatchError(
            f'{key} has {tensor.shape[0]} class rows, where the official COCO layout has '
            f'{official_rows}: only checkpoints of COCO with the official class ids convert')
    return tensor[list(COCO_CATEGORY_IDS)].clone()


def _backbone_levels(state: StateDict) -> int:
    """How many official input projections read backbone levels: those are 1x1 convolutions, the
    extra levels' stride-2 3x3 ones."""
    return sum(1 for k, v in state.items()
               if (m := _INPUT_PROJ.match(k)) and m.group(2, 3) == ('0', 'weight')
               and v.shape[-1] == 1)


def _num_decoder_layers(state: StateDict) -> int:
    return len({m.group(2) for k in state
                if (m := _LAYER_KEY.match(k)) and m.group(1) == 'decoder'})


def _rename(key: str, tensor: torch.Tensor, num_decoder_layers: int,
            backbone_levels: int) -> Optional[Tuple[str, torch.Tensor]]:
    """Our name and value of an official non-backbone tensor, or None if it maps to nothing."""
    if match := _LAYER_KEY.match(key):
        coder, index, module, rest = match.groups()
        table = _ENCODER_LAYER if coder == 'encoder' else _DECODER_LAYER
        if module not in table:
            return None
        return f'{coder}.layers.{index}.{table[module]}.{rest}', tensor
    if match := _CLASSIFIER.match(key):
        index, rest = match.groups()
        branch = num_decoder_layers if index is None else int(index)
        return (f'bbox_head.cls_branches.{branch}.{rest}',
                _coco_rows(key, tensor, OFFICIAL_CLASS_IDS))
    if match := _BOX_MLP.match(key):
        index, layer, rest = match.groups()
        branch = num_decoder_layers if index is None else int(index)
        return f'bbox_head.reg_branches.{branch}.{2 * int(layer)}.{rest}', tensor
    if match := _INPUT_PROJ.match(key):
        level, part, rest = int(match.group(1)), match.group(2), match.group(3)
        module = 'conv' if part == '0' else 'gn'
        if level < backbone_levels:
            return f'neck.convs.{level}.{module}.{rest}', tensor
        return f'neck.extra_convs.{level - backbone_levels}.{module}.{rest}', tensor
    if key == _LABEL_BOOK:
        return ('dn_query_generator.label_embedding.weight',
                _coco_rows(key, tensor, OFFICIAL_LABEL_BOOK))
    new_key = first_rename(key, _RENAMES)
    return None if new_key is None else (new_key, tensor)


def convert_official_dino_state_dict(state: StateDict) -> StateDict:
    """The weights of an official FasterViT DINO detector under MMDetection's DINO names, for the 80
    COCO classes. Raises :class:`CheckpointMismatchError` naming every tensor that maps to nothing
    and every shared prediction layer whose copies differ."""
    num_decoder_layers = _num_decoder_layers(state)
    backbone_levels = _backbone_levels(state)
    backbone, others, unmapped = {}, {}, []
    for key, tensor in state.items():
        if key.startswith('backbone.0.'):
            backbone[key[len('backbone.0.'):]] = tensor
            continue
        alias = _SHARED_ALIAS.match(key)
        if alias:
            shared = alias.group(1)
            if shared not in state or not (state[shared] is tensor
                                           or torch.equal(state[shared], tensor)):
                raise CheckpointMismatchError(
                    f'{key} should be the prediction layer {shared} the decoder layers share, '
                    f'but the checkpoint holds {"no" if shared not in state else "another"} '
                    f'tensor under {shared}')
            continue
        renamed = _rename(key, tensor, num_decoder_layers, backbone_levels)
        if renamed is None:
            unmapped.append(key)
        else:
            others[renamed[0]] = renamed[1]
    backbone, classifier = convert_official_state_dict(backbone)
    unmapped += [f'backbone.0.{key}' for key in classifier]
    if unmapped:
        raise CheckpointMismatchError(
            f'{len(unmapped)} tensors of the official DINO checkpoint map to nothing in '
            f"MMDetection's DINO: {summarise_keys(unmapped)}")
    return {**{f'backbone.{k}': v for k, v in backbone.items()}, **others}


def fit_to_model(model: torch.nn.Module, converted: StateDict, source: str) -> StateDict:
    """Checks converted weights against an MMDetection DINO and returns what to load.

    For a model of other classes than COCO's (fine-tuning on another dataset) the class-dependent
    layers are left out, to keep their initialisation, with a warning that says so. Raises
    :class:`CheckpointMismatchError` listing every missing, unexpected or mis-shaped tensor.
    """
    head = getattr(model, 'bbox_head', None)
    num_classes = getattr(head, 'num_classes', len(COCO_CATEGORY_IDS))
    left_out: Tuple[str, ...] = ()
    if num_classes != len(COCO_CATEGORY_IDS):
        left_out = CLASS_DEPENDENT_PREFIXES
        converted = {k: v for k, v in converted.items() if not k.startswith(left_out)}
        print_log(f'{source} classifies the {len(COCO_CATEGORY_IDS)} COCO categories and this '
                  f'model {num_classes} classes: its classification layers '
                  f'({", ".join(left_out)}) are initialised afresh, every other weight is loaded',
                  logger='current', level=logging.WARNING)
    check_state_dict(model, converted, source, allowed_missing=left_out)
    return converted


@HOOKS.register_module()
class OfficialDINOCheckpointHook(Hook):
    """Makes the Runner load official FasterViT DINO checkpoints as published.

    ``load_from`` (and with it ``tools/test.py CONFIG CHECKPOINT``) may name the official file: the
    hook converts its weights (:func:`convert_official_dino_state_dict`) before the Runner loads
    them, checks that they fit the model exactly (an error lists what does not), and leaves out the
    official training state (optimizer, schedule, epoch, arguments), which belongs to the official
    code. Every other checkpoint passes through untouched.
    """
    priority = 'VERY_HIGH'  # before any hook that reads the loaded checkpoint

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not isinstance(checkpoint.get('model'), dict):
            return
        source = runner.cfg.get('load_from') or 'the checkpoint'
        state = extract_state_dict(checkpoint, source=source)
        if not is_official_dino(state):
            return
        if runner.cfg.get('resume'):
            raise CheckpointMismatchError(
                f'{source} is an official DINO training checkpoint: its optimizer and schedule '
                f'belong to the official code, so it cannot be resumed; fine-tune from it with '
                f'load_from instead')
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        converted = fit_to_model(model, convert_official_dino_state_dict(state), source)
        checkpoint.clear()
        checkpoint['state_dict'] = converted
        print_log(f'Converted the official DINO checkpoint {source}: {len(converted)} tensors '
                  f'for {type(model).__name__} (its training state is not used)',
                  logger='current')
