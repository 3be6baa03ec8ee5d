"""Official FasterViT checkpoints: key mapping onto this package's module tree, and strict loading
of pretrained backbone weights.

Official files are timm training dicts (``epoch``, ``arch``, ``args`` (an ``argparse.Namespace``),
``optimizer``...) whose weights sit under ``state_dict`` (some tools write ``model``), possibly with a
``module.`` prefix. Besides parameters they hold *derived* buffers (frozen positional terms and
relative-position tables for one input size) that this implementation recomputes: those are dropped.
"""
import re
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

StateDict = Dict[str, torch.Tensor]

# Buffers the official network derives from its construction resolution.
DERIVED_BUFFERS = re.compile(r'\.(relative_bias|relative_coords_table|relative_position_index)$')
CLASSIFIER_PREFIXES = ('norm.', 'head.')
OFFICIAL_PREFIXES = ('patch_embed.', 'levels.')

# (official pattern, ours), tried in order, first match wins; applied to whole keys.
_OFFICIAL_TO_OURS = [
    (r'^patch_embed\.conv_down\.0\.', 'stem.conv1.'),
    (r'^patch_embed\.conv_down\.1\.', 'stem.norm1.'),
    (r'^patch_embed\.conv_down\.3\.', 'stem.conv2.'),
    (r'^patch_embed\.conv_down\.4\.', 'stem.norm2.'),
    (r'^levels\.(\d+)\.downsample\.reduction\.0\.', r'stages.\1.downsample.conv.'),
    (r'^levels\.(\d+)\.downsample\.norm\.', r'stages.\1.downsample.norm.'),
    # the tokenizer's depthwise conv is registered twice in the official module tree
    (r'^levels\.(\d+)\.global_tokenizer\.(pos_embed|to_global_feature\.pos)\.',
     r'stages.\1.carrier_init.conv.'),
]
# Inside a transformer block: the carrier-token sub-block is spread over ``hat_*`` modules and the
# layer scales ``gamma1``/``gamma2``; the window path's layer scales are ``gamma3``/``gamma4``.
_BLOCK_RENAMES = [
    (r'^hat_(norm1|norm2|attn|mlp)\.', r'carrier.\1.'),
    (r'^hat_pos_embed\.', 'carrier.pos_embed.'),
    (r'^(gamma1|gamma2)$', r'carrier.\1'),
    (r'^gamma3$', 'gamma1'),
    (r'^gamma4$', 'gamma2'),
]
_MLP_RENAMES = [
    (r'pos_emb_funct\.cpb_mlp\.0\.', 'rel_pos_mlp.fc1.'),
    (r'pos_emb_funct\.cpb_mlp\.2\.', 'rel_pos_mlp.fc2.'),
    (r'pos_embed\.cpb_mlp\.0\.', 'pos_mlp.fc1.'),
    (r'pos_embed\.cpb_mlp\.2\.', 'pos_mlp.fc2.'),
]
_BLOCK_KEY = re.compile(r'^levels\.(\d+)\.blocks\.(\d+)\.(.+)$')


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model it is loaded into."""


def extract_state_dict(checkpoint, source: str = 'checkpoint') -> StateDict:
    """The weights of a loaded checkpoint: under ``state_dict`` or ``model`` or the dict itself,
    with a ``module.`` (DataParallel/DDP) prefix removed."""
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(
            f'{source} holds a {type(checkpoint).__name__}, not a checkpoint dict')
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointMismatchError(f'{source} contains no weights (keys: {list(checkpoint)[:10]})')
    if all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def is_official(state: StateDict) -> bool:
    return any(k.startswith(OFFICIAL_PREFIXES) for k in state)


def first_rename(key: str, rules) -> Optional[str]:
    """``key`` rewritten by the first ``(pattern, replacement)`` of ``rules`` that matches it, or
    None when none does."""
    for pattern, repl in rules:
        new_key, hits = re.subn(pattern, repl, key)
        if hits:
            return new_key
    return None


def official_key_to_ours(key: str) -> str:
    """Our name of an official parameter/buffer (classifier keys are returned unchanged)."""
    block = _BLOCK_KEY.match(key)
    if block:
        stage, index, rest = block.groups()
        rest = first_rename(rest, _BLOCK_RENAMES) or rest
        for pattern, repl in _MLP_RENAMES:
            rest = re.sub(pattern, repl, rest)
        return f'stages.{stage}.blocks.{index}.{rest}'
    return first_rename(key, _OFFICIAL_TO_OURS) or key


def convert_official_state_dict(state: StateDict) -> Tuple[StateDict, StateDict]:
    """Split an official state dict into (backbone weights, classifier weights) under our names,
    dropping derived buffers."""
    backbone, classifier = {}, {}
    for key, value in state.items():
        if DERIVED_BUFFERS.search(key):
            continue
        if key.startswith(CLASSIFIER_PREFIXES):
            classifier[key] = value
            continue
        new_key = official_key_to_ours(key)
        if new_key in backbone and not torch.equal(backbone[new_key], value):
            raise CheckpointMismatchError(
                f'official checkpoint holds two different tensors for {new_key}')
        backbone[new_key] = value
    return backbone, classifier


def summarise_keys(keys: Iterable[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')


def check_state_dict(model: torch.nn.Module, state: StateDict, source: str,
                     allowed_missing: Tuple[str, ...] = ()) -> None:
    """Raise :class:`CheckpointMismatchError` if a weight of ``model`` is missing from ``state``
    (other than keys starting with ``allowed_missing``), unexpected, or of the wrong shape."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(allowed_missing)]
    unexpected = [k for k in state if k not in own]
    mismatched = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        problems = []
        if mismatched:
            problems.append(f'{len(mismatched)} shape mismatches: {summarise_keys(mismatched)}')
        if missing:
            problems.append(f'{len(missing)} missing weights: {summarise_keys(missing)}')
        if unexpected:
            problems.append(f'{len(unexpected)} unexpected weights: {summarise_keys(unexpected)}')
        raise CheckpointMismatchError(
            f'{source} does not fit this {type(model).__name__} '
            f'(is it another variant?):\n  ' + '\n  '.join(problems))


def check_and_load(model: torch.nn.Module, state: StateDict, source: str,
                   allowed_missing: Tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``model`` after :func:`check_state_dict`: nothing is loaded on error."""
    check_state_dict(model, state, source, allowed_missing)
    model.load_state_dict(state, strict=False)


def load_pretrained_backbone(model: torch.nn.Module, checkpoint: str,
                             prefix: str = '') -> None:
    """Load ImageNet weights into a FasterViT backbone from an official ``.pth.tar`` (converted on
    the fly) or from a state dict in this package's naming. The output norms ``norm{i}`` are not part
    of classification checkpoints and keep their initialisation."""
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state = extract_state_dict(loaded, source=checkpoint)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointMismatchError(f'{checkpoint} has no weights under prefix {prefix!r}')
    elif any(k.startswith('backbone.') for k in state):
        raise CheckpointMismatchError(
            f'{checkpoint} is a whole detector/segmentor checkpoint, not backbone weights: resume '
            f'or fine-tune it with `load_from={checkpoint!r}` in the config, or take its backbone '
            f"with init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.').")
    dropped = 0
    if is_official(state):
        state, classifier = convert_official_state_dict(state)
        dropped = len(classifier)
    output_norms = tuple(f'norm{i}.' for i in range(4))
    state = {k: v for k, v in state.items() if not k.startswith(output_norms)}
    check_and_load(model, state, source=checkpoint, allowed_missing=output_norms)
    print_log(f'Loaded {len(state)} backbone tensors from {checkpoint}'
              + (f' (dropped {dropped} classifier tensors)' if dropped else ''), logger='current')
