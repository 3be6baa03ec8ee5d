"""FasterViT backbone (Hatamizadeh et al., "FasterViT: Fast Vision Transformers with Hierarchical
Attention", ICLR 2024, arXiv 2306.06189) for MMDetection and MMSegmentation.

The network is a hybrid: a strided conv stem, two stages of residual conv blocks at strides 4 and 8,
then two transformer stages at strides 16 and 32 whose blocks attend inside local ``w x w`` windows.
Hierarchical attention (HAT) gives every window a few *carrier tokens*: all carrier tokens of an image
attend to each other globally (cheap: there are few), then each window attends over its own tokens
together with its carriers, so information crosses window borders at almost no cost.

Every shape-dependent quantity (window padding, carrier-token grid and pooling geometry, positional
terms, attention biases) is derived from the actual feature size in ``forward``: one model serves any
input size, and nothing shape-dependent is stored in the state dict. How some layers run fast
(kernel choice, BatchNorm folding) is in :mod:`.kernels`.
"""
import math
from typing import Dict, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmfastervit import compat
from .kernels import (TokenLinear, at_least_one, average_pool, conv_norm,
                      warn_if_bf16_is_emulated)

# Official FasterViT variants. ``window_size`` and ``hat`` are per stage; ``layer_scale`` is the
# initial value of the residual scales of transformer blocks (None: no layer scale); ``propagation``
# adds each window's carrier tokens back into its tokens after the last block of a HAT stage.
ARCH_SETTINGS: Dict[str, dict] = {
    '0': dict(depths=(2, 3, 6, 5), dim=64, in_dim=64, num_heads=(2, 4, 8, 16), drop_path_rate=0.2),
    '1': dict(depths=(1, 3, 8, 5), dim=80, in_dim=32, num_heads=(2, 4, 8, 16), drop_path_rate=0.2),
    '2': dict(depths=(3, 3, 8, 5), dim=96, in_dim=64, num_heads=(2, 4, 8, 16), drop_path_rate=0.2),
    '3': dict(depths=(3, 3, 12, 5), dim=128, in_dim=64, num_heads=(2, 4, 8, 16), drop_path_rate=0.3,
              layer_scale=1e-5, propagation=True),
    '4': dict(depths=(3, 3, 12, 5), dim=196, in_dim=64, num_heads=(4, 8, 16, 32), drop_path_rate=0.3,
              layer_scale=1e-5, propagation=True),
    '5': dict(depths=(3, 3, 12, 5), dim=320, in_dim=64, num_heads=(4, 8, 16, 32), drop_path_rate=0.3,
              layer_scale=1e-5, propagation=True),
    '6': dict(depths=(3, 3, 16, 8), dim=320, in_dim=64, num_heads=(4, 8, 16, 32), drop_path_rate=0.5,
              layer_scale=1e-5, propagation=True),
}
# ImageNet-21K pre-trained FasterViT-4 models: plain window attention whose window covers the whole
# stage-3 map at the native resolution (no carrier tokens).
for _size, _windows in {224: (14, 7), 384: (24, 12), 512: (32, 16), 768: (48, 24)}.items():
    ARCH_SETTINGS[f'4-21k-{_size}'] = dict(
        ARCH_SETTINGS['4'], drop_path_rate=0.42, window_size=(7, 7) + _windows, hat=(False, ) * 4)

ARCH_DEFAULTS = dict(window_size=(7, 7, 7, 7), ct_size=2, hat=(False, False, True, False),
                     layer_scale=None, propagation=False, mlp_ratio=4.0)
NUM_STAGES = 4
MIN_INPUT_SIZE = 32
CONV_STAGES = 2  # stages 0 and 1 are convolutional, 2 and 3 transformer stages


def resolve_arch(arch: Union[str, int, dict]) -> dict:
    """The full hyper-parameter set of a variant name or of a custom ``dict``. A whole number names
    the variant of that number (``--cfg-options model.backbone.arch=2`` gives an int)."""
    if isinstance(arch, int) and not isinstance(arch, bool):
        arch = str(arch)
    if isinstance(arch, str):
        key = arch.lower()
        if key not in ARCH_SETTINGS:
            raise KeyError(f'Unknown FasterViT arch {arch!r}; valid: {", ".join(ARCH_SETTINGS)} '
                           f'or a dict of hyper-parameters.')
        return dict(ARCH_DEFAULTS, **ARCH_SETTINGS[key])
    if not isinstance(arch, dict):
        raise TypeError(f'arch must be a variant name or a dict, got {type(arch).__name__}')
    required = {'depths', 'dim', 'in_dim', 'num_heads'}
    missing = required - set(arch)
    unknown = set(arch) - required - set(ARCH_DEFAULTS) - {'drop_path_rate'}
    if missing or unknown:
        raise KeyError(f'Custom FasterViT arch: missing keys {sorted(missing)}, unknown keys '
                       f'{sorted(unknown)}; allowed: {sorted(required | set(ARCH_DEFAULTS))}.')
    settings = dict(ARCH_DEFAULTS, drop_path_rate=0.0, **arch)
    for key in ('depths', 'num_heads', 'window_size', 'hat'):
        if len(settings[key]) != NUM_STAGES:
            raise ValueError(f'Custom FasterViT arch: {key} needs {NUM_STAGES} entries, '
                             f'got {settings[key]}')
    return settings


# ----------------------------------------------------------------------------------------------
# Convolutional part: stem, conv blocks, downsamplers
# ----------------------------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (a subclass of ``nn.LayerNorm`` so that optimizer
    constructors recognise it as a norm layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


MODELS.register_module('LN2d', module=LayerNorm2d, force=True)


def conv_stage_norm(norm_cfg: Optional[dict], channels: int, eps: float) -> nn.Module:
    """The norm after a convolution of the stem or a conv block: the official network's BatchNorm
    (with its ``eps``) unless ``norm_cfg`` names another."""
    if norm_cfg is None:
        return nn.BatchNorm2d(channels, eps=eps)
    return build_norm_layer(norm_cfg, channels)[1]


class ConvStem(nn.Module):
    """Two stride-2 3x3 convolutions, each with a norm (BatchNorm unless ``norm_cfg`` says
    otherwise) and ReLU: image -> stride-4 features."""

    def __init__(self, in_channels: int, hidden_dim: int, dim: int,
                 norm_cfg: Optional[dict] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_dim, 3, 2, 1, bias=False)
        self.norm1 = conv_stage_norm(norm_cfg, hidden_dim, eps=1e-4)
        self.conv2 = nn.Conv2d(hidden_dim, dim, 3, 2, 1, bias=False)
        self.norm2 = conv_stage_norm(norm_cfg, dim, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(conv_norm(self.conv1, self.norm1, x))
        return F.relu(conv_norm(self.conv2, self.norm2, x))


class ConvBlock(nn.Module):
    """x + DropPath(gamma * BN(conv3x3(GELU(BN(conv3x3(x)))))), BN unless ``norm_cfg`` names
    another norm."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale: Optional[float] = None,
                 norm_cfg: Optional[dict] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm1 = conv_stage_norm(norm_cfg, dim, eps=1e-5)
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm2 = conv_stage_norm(norm_cfg, dim, eps=1e-5)
        self.gamma = layer_scale_param(dim, layer_scale)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(conv_norm(self.conv1, self.norm1, x))
        return x + self.drop_path(conv_norm(self.conv2, self.norm2, y, self.gamma))


class Downsample(nn.Module):
    """Channel LayerNorm then a stride-2 3x3 conv doubling the channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.conv = nn.Conv2d(dim, 2 * dim, 3, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


def layer_scale_param(dim: int, init: Optional[float]) -> Optional[nn.Parameter]:
    return nn.Parameter(torch.full((dim, ), init)) if init else None


def scaled(x: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
    return x if gamma is None else x * gamma


# ----------------------------------------------------------------------------------------------
# Positions: learned positional terms and continuous relative position biases
# ----------------------------------------------------------------------------------------------


class PositionMLP(nn.Module):
    """2 -> 512 -> ReLU -> out MLP mapping 2-D coordinates to a positional term (token embeddings or
    per-head attention biases)."""

    def __init__(self, out_dim: int, hidden_dim: int = 512):
        super().__init__()
        self.fc1 = nn.Linear(2, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim, bias=False)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(coords)))


Positions = Tuple[torch.Tensor, torch.Tensor]  # (row, col) grid index of each token


def grid_positions(rows: int, cols: int, device=None) -> Positions:
    """Row and column index of every cell of a ``rows x cols`` grid, in row-major order."""
    row, col = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device),
                              indexing='ij')
    return row.reshape(-1), col.reshape(-1)


def axis_coords(index: torch.Tensor, n: int) -> torch.Tensor:
    """Grid index along an axis of length n -> ``(i - n//2) / (n//2)`` (about [-1, 1]; 0 if n=1)."""
    half = n // 2
    return (index.float() - half) / at_least_one(half)


def position_coords(positions: Positions, rows: int, cols: int) -> torch.Tensor:
    """(N, 2) normalised (row, col) coordinates of tokens at the given grid positions."""
    return torch.stack([axis_coords(positions[0], rows), axis_coords(positions[1], cols)], dim=-1)


WINDOW_COORD_NORMS = ('side', 'tokens')


def window_token_coords(window: int, norm: str = 'side') -> torch.Tensor:
    """(w*w, 2) coordinates of a window's tokens for its positional MLP. ``'side'``: each axis
    normalised by half the window side (the classification network); ``'tokens'``: both axes by half
    the number of tokens in the window, ``(i - w*w//2) / (w*w//2)``, the definition the official DINO
    detector was fine-tuned with."""
    if norm not in WINDOW_COORD_NORMS:
        raise ValueError(f'window_coord_norm must be one of {WINDOW_COORD_NORMS}, got {norm!r}')
    scale = window if norm == 'side' else window * window
    return position_coords(grid_positions(window, window), scale, scale)


def log_relative_coords(rows: int, cols: int, device=None) -> torch.Tensor:
    """((2*rows-1)*(2*cols-1), 2) relative offsets of a grid, normalised per axis to [-1, 1] and
    log-spaced as in Swin-V2's continuous position bias: sign(d) * log2(1 + 8|d|) / 3."""
    axes = []
    for n in (rows, cols):
        offsets = torch.arange(-(n - 1), n, dtype=torch.float32, device=device)
        axes.append(offsets / at_least_one(n - 1))
    table = torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1).reshape(-1, 2) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0


def relative_position_index(positions: Positions, rows: int, cols: int) -> torch.Tensor:
    """(N, N) index into the relative-offset table of a ``rows x cols`` grid for tokens at the given
    grid positions (in any order)."""
    token_rows, token_cols = positions
    d_row = token_rows[:, None] - token_rows[None, :] + rows - 1
    d_col = token_cols[:, None] - token_cols[None, :] + cols - 1
    return d_row * (2 * cols - 1) + d_col


# ----------------------------------------------------------------------------------------------
# Transformer layers
# ----------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention with a continuous relative position bias: an MLP on log-spaced
    relative offsets of the token grid gives each head a bias ``16 * sigmoid(mlp(offset))``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.qkv = TokenLinear(dim, 3 * dim, bias=qkv_bias)
        self.proj = TokenLinear(dim, dim)
        self.rel_pos_mlp = PositionMLP(num_heads)

    def position_bias(self, offsets: torch.Tensor, index: torch.Tensor,
                      num_prefix: int = 0) -> torch.Tensor:
        """(1, heads, P+N, P+N) bias of N grid tokens, from their grid's relative-offset table
        (:func:`log_relative_coords`) and index (:func:`relative_position_index`); the
        ``num_prefix`` tokens in front of the grid tokens (carrier tokens of a window) get none."""
        table = 16 * torch.sigmoid(self.rel_pos_mlp(offsets))
        # contiguous: the fused attention kernel would otherwise copy the mask on every call
        bias = table[index].permute(2, 0, 1).contiguous()
        if num_prefix:
            bias = F.pad(bias, (num_prefix, 0, num_prefix, 0))
        return bias.unsqueeze(0)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if torch.is_grad_enabled() or compat.is_compiling():
            # Written out: with gradients for a float mask the fused kernel falls back to a slower
            # generic path; under torch.compile inductor fuses the bias and softmax between the two
            # batched matmuls, which beats the fused kernel for windows of ~50 tokens on the CPU;
            # and the exporter mis-derives the layout of the fused kernel's output for symbolic
            # sizes.
            attn = (q * q.shape[-1]**-0.5) @ k.transpose(-2, -1) + bias.to(q.dtype)
            x = attn.softmax(dim=-1) @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(x.transpose(1, 2).reshape(batch, length, dim))


class Mlp(nn.Module):

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = TokenLinear(dim, hidden_dim)
        self.fc2 = TokenLinear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer over tokens on a grid: x + pos_mlp(coords), then
    x + gamma1 * Attn(LN(x)) and x + gamma2 * MLP(LN(x)), the residuals with DropPath."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float,
                 layer_scale: Optional[float]):
        super().__init__()
        self.pos_mlp = PositionMLP(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.gamma1 = layer_scale_param(dim, layer_scale)
        self.gamma2 = layer_scale_param(dim, layer_scale)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def residuals(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(scaled(self.attn(self.norm1(x), bias), self.gamma1))
        return x + self.drop_path(scaled(self.mlp(self.norm2(x)), self.gamma2))


# ----------------------------------------------------------------------------------------------
# Windows and carrier tokens (hierarchical attention)
# ----------------------------------------------------------------------------------------------


class WindowGeometry(NamedTuple):
    """How a transformer stage tiles its (padded) feature map."""
    window: int
    rows: int  # windows along H
    cols: int  # windows along W
    ct_size: int  # carriers per window along each axis; 0 without carrier tokens

    def carrier_positions(self, device=None) -> Positions:
        """(row, col), in the (rows*ct) x (cols*ct) carrier grid, of each carrier token in the
        window-major order carriers are kept in (window by window, row-major inside a window)."""
        ct = self.ct_size
        win_r, win_c, r, c = torch.meshgrid(
            *(torch.arange(n, device=device) for n in (self.rows, self.cols, ct, ct)),
            indexing='ij')
        return (win_r * ct + r).reshape(-1), (win_c * ct + c).reshape(-1)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, C, H, W) -> (B*nW, w*w, C), windows in row-major order."""
    batch, dim, height, width = x.shape
    x = x.view(batch, dim, height // window, window, width // window, window)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, window * window, dim)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """(B*nW, w*w, C) -> (B, C, H, W)."""
    dim = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, dim)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(-1, dim, height, width)


class CarrierTokenInit(nn.Module):
    """Initial carrier tokens of a HAT stage: depthwise 3x3 conv, then average pooling to a grid of
    ct x ct cells per window.

    Per axis of (padded) length L = n*w, the pooling has ``out = ct*n`` cells, stride
    ``L // out`` (= w // ct) and kernel ``L - (out - 1) * stride``: the stride is the cell pitch and
    the kernel is stretched so that the last cell ends exactly at the map's edge, i.e. the cells cover
    the whole map and each window's carriers summarise (about) that window. This is the geometry the
    published weights were trained with, derived here from the actual feature size.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    @staticmethod
    def pooling(length: int, window: int, ct_size: int) -> Tuple[int, int, int]:
        """(kernel, stride, cells) along an axis of padded length ``length``."""
        cells = ct_size * length // window
        stride = length // cells
        return length - (cells - 1) * stride, stride, cells

    def forward(self, x: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
        """(B, C, Hp, Wp) padded stage input -> (B, nW*ct*ct, C) carriers in window-major order."""
        kernel, stride, cells = zip(*(self.pooling(length, geometry.window, geometry.ct_size)
                                      for length in x.shape[2:]))
        pooled = average_pool(self.conv(x), kernel, stride, cells)
        batch, dim = pooled.shape[:2]
        ct = geometry.ct_size
        pooled = pooled.view(batch, dim, geometry.rows, ct, geometry.cols, ct)
        return pooled.permute(0, 2, 4, 3, 5, 1).reshape(batch, -1, dim)


class CarrierLayer(TransformerLayer):
    """Global attention among all carrier tokens of an image (the cross-window path of HAT), with a
    positional term and relative position bias over the (rows*ct) x (cols*ct) carrier grid."""

    def forward(self, carriers: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
        """carriers: (B, T, C) in window-major order."""
        ct = geometry.ct_size
        rows, cols = geometry.rows * ct, geometry.cols * ct
        positions = geometry.carrier_positions(carriers.device)
        offsets = log_relative_coords(rows, cols, carriers.device)
        bias = self.attn.position_bias(offsets, relative_position_index(positions, rows, cols))
        carriers = carriers + self.pos_mlp(position_coords(positions, rows, cols))
        return self.residuals(carriers, bias)


def nearest_carrier_index(ct_size: int, window: int, device=None) -> torch.Tensor:
    """For each token of a window, its carrier under nearest-neighbour upsampling of the window's
    ct x ct carriers to w x w (PyTorch's 'nearest' rule, so it equals ``F.interpolate``)."""
    grid = torch.arange(ct_size * ct_size, dtype=torch.float32, device=device)
    grid = grid.view(1, 1, ct_size, ct_size)
    return F.interpolate(grid, size=(window, window), mode='nearest').long().view(-1)


class HATBlock(TransformerLayer):
    """Hierarchical attention block.

    With carrier tokens: the carriers first attend globally (``carrier``), then are put in front of
    their window's tokens for the window attention, and split off again. The last block of a stage
    with ``propagate`` adds each window's carriers, nearest-upsampled to the window, to its tokens.
    """

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float, drop_path: float,
                 layer_scale: Optional[float], with_carriers: bool, propagate: bool,
                 window_coord_norm: str = 'side'):
        super().__init__(dim, num_heads, mlp_ratio, drop_path, layer_scale)
        self.carrier = CarrierLayer(dim, num_heads, mlp_ratio, drop_path,
                                    layer_scale) if with_carriers else None
        self.propagate = propagate
        # The window grid's coordinate tables are fixed, so they are (non-persistent) buffers: under
        # torch.compile with inductor's freezing, the positional MLPs applied to buffers fold into
        # constants, where values derived from torch.arange in the graph are not folded.
        self.register_buffer('window_coords', window_token_coords(window, window_coord_norm),
                             persistent=False)
        self.register_buffer('window_offsets', log_relative_coords(window, window),
                             persistent=False)
        self.register_buffer('window_offset_index',
                             relative_position_index(grid_positions(window, window), window, window),
                             persistent=False)

    def forward(self, x: torch.Tensor, carriers: Optional[torch.Tensor],
                geometry: WindowGeometry) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """x: (B*nW, w*w, C) window tokens; carriers: (B, nW*ct*ct, C) in window-major order, or
        None without carrier tokens."""
        x = x + self.pos_mlp(self.window_coords)
        num_prefix = geometry.ct_size**2  # carriers per window
        bias = self.attn.position_bias(self.window_offsets, self.window_offset_index, num_prefix)
        if carriers is None:
            return self.residuals(x, bias), None
        batch, num_carriers, dim = carriers.shape
        carriers = self.carrier(carriers, geometry)
        x = torch.cat([carriers.reshape(-1, num_prefix, dim), x], dim=1)
        x = self.residuals(x, bias)
        window_carriers, x = x.split([num_prefix, x.shape[1] - num_prefix], dim=1)
        if self.propagate:
            index = nearest_carrier_index(geometry.ct_size, geometry.window, x.device)
            x = x + scaled(window_carriers[:, index], self.carrier.gamma1)
        return x, window_carriers.reshape(batch, num_carriers, dim)


# ----------------------------------------------------------------------------------------------
# Stages and the backbone
# ----------------------------------------------------------------------------------------------


class Stage(nn.Module):
    """A stage's blocks, then (except in the last stage) its downsampler, which computes the next
    stage's input (as mmdet's ``SwinBlockSequence``)."""

    def __init__(self, blocks: Sequence[nn.Module], dim: int, downsample: bool, with_cp: bool):
        super().__init__()
        self.with_cp = with_cp
        self.blocks = nn.ModuleList(blocks)
        self.downsample = Downsample(dim) if downsample else None

    def run_block(self, block: nn.Module, *args):
        if self.with_cp and self.training:
            return cp.checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor,
                downsample: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(the stage's features, their downsampled version for the next stage, or None when
        ``downsample`` is False or the stage has no downsampler)."""
        x = self.forward_blocks(x)
        return x, self.downsample(x) if downsample and self.downsample is not None else None


class ConvStage(Stage):
    """Conv blocks; with ``pad_to``, run on the map zero-padded right and bottom to a multiple of
    ``pad_to`` and cropped back (the official DINO backbone pads every stage to whole windows)."""

    def __init__(self, dim: int, depth: int, drop_paths: Sequence[float], downsample: bool,
                 with_cp: bool = False, pad_to: int = 0, norm_cfg: Optional[dict] = None):
        super().__init__((ConvBlock(dim, dp, norm_cfg=norm_cfg) for dp in drop_paths[:depth]),
                         dim, downsample, with_cp)
        self.pad_to = pad_to

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        if self.pad_to:
            x = F.pad(x, (0, -width % self.pad_to, 0, -height % self.pad_to))
        for block in self.blocks:
            x = self.run_block(block, x)
        return x[:, :, :height, :width] if self.pad_to else x


class TransformerStage(Stage):
    """Window-attention stage; with ``hat`` it uses carrier tokens whenever the (padded) map holds
    more than one window along an axis. The map is padded right and bottom to whole windows and
    cropped back after the blocks."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, ct_size: int,
                 hat: bool, propagation: bool, mlp_ratio: float, layer_scale: Optional[float],
                 drop_paths: Sequence[float], downsample: bool, window_coord_norm: str = 'side',
                 with_cp: bool = False):
        carrier_init = CarrierTokenInit(dim) if hat else None
        blocks = (HATBlock(dim, num_heads, window, mlp_ratio, drop_paths[i], layer_scale,
                           with_carriers=hat, propagate=propagation and i == depth - 1,
                           window_coord_norm=window_coord_norm) for i in range(depth))
        super().__init__(blocks, dim, downsample, with_cp)
        self.carrier_init = carrier_init
        self.window = window
        self.ct_size = ct_size if hat else 0

    def geometry(self, height: int, width: int) -> WindowGeometry:
        rows, cols = math.ceil(height / self.window), math.ceil(width / self.window)
        with_carriers = self.ct_size and (rows > 1 or cols > 1)
        return WindowGeometry(self.window, rows, cols, self.ct_size if with_carriers else 0)

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        geometry = self.geometry(height, width)
        padded_h, padded_w = geometry.rows * self.window, geometry.cols * self.window
        x = F.pad(x, (0, padded_w - width, 0, padded_h - height))
        carriers = self.carrier_init(x, geometry) if geometry.ct_size else None
        x = window_partition(x, self.window)
        for block in self.blocks:
            x, carriers = self.run_block(block, x, carriers, geometry)
        x = window_reverse(x, self.window, padded_h, padded_w)
        return x[:, :, :height, :width]


@MODELS.register_module()
class FasterViT(BaseModule):
    """FasterViT backbone returning multi-scale features.

    Args:
        arch (str | dict): Variant name ('0'-'6', '4-21k-224', '4-21k-384', '4-21k-512',
            '4-21k-768') or a dict with ``depths``, ``dim``, ``in_dim``, ``num_heads`` and optionally
            ``window_size``, ``ct_size``, ``hat``, ``layer_scale``, ``propagation``, ``mlp_ratio``,
            ``drop_path_rate``.
        in_channels (int): Input image channels. Default: 3.
        out_indices (Sequence[int]): Stages whose features are returned (0-3), each taken before its
            stage's downsampler and passed through a norm ``norm{i}``. Default: all four.
        frozen_stages (int): Freeze the stem (0) and the first ``frozen_stages`` stages with their
            output norms; -1 freezes nothing. Default: -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training. Default: False.
        with_cp (bool): Checkpoint every block's activations to save memory. Default: False.
        drop_path_rate (float, optional): Stochastic depth, increasing linearly over all blocks to
            this value. Default: the variant's.
        norm_cfg (dict): Norm of the returned features. Default: channel LayerNorm, independent of
            the batch (detection trains with 1-2 images per GPU).
        conv_norm_cfg (dict, optional): Norm of the conv stem and conv blocks. Default: None, the
            official network's BatchNorm, which official checkpoints need. Trained from scratch with
            one or two images a step, BatchNorm normalises each image by its own statistics and is
            then tested with running averages of them, a different network; a norm independent of
            the batch (e.g. ``dict(type='GN', num_groups=32)``) trains and tests alike.
        check_finite (bool): Validate that inputs hold no NaN/inf values (a debugging aid that
            costs a pass over the input). Default: False.
        window_coord_norm (str): How the window tokens' coordinates are normalised for their
            positional MLP: ``'side'`` (by half the window side, as the classification network and
            its ImageNet weights) or ``'tokens'`` (by half the number of tokens in a window, as the
            official DINO detector's backbone). Default: 'side'.
        pad_conv_stages (bool): Run each conv stage on its input zero-padded at the bottom and
            right to a multiple of the stage's window size, then cropped, as the official DINO
            detector's backbone does. Default: False (the classification network).
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``; official
            FasterViT checkpoints are converted on the fly.
    """

    def __init__(self,
                 arch: Union[str, dict] = '0',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: Optional[float] = None,
                 norm_cfg: dict = dict(type='LN2d', eps=1e-6),
                 conv_norm_cfg: Optional[dict] = None,
                 check_finite: bool = False,
                 window_coord_norm: str = 'side',
                 pad_conv_stages: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        settings = resolve_arch(arch)
        self.arch_settings = settings
        out_indices = tuple(out_indices)
        if not out_indices or any(not 0 <= i < NUM_STAGES for i in out_indices):
            raise ValueError(f'out_indices must be non-empty values in 0..{NUM_STAGES - 1}, '
                             f'got {out_indices}')
        if not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(f'frozen_stages must be in -1..{NUM_STAGES}, got {frozen_stages}')
        if window_coord_norm not in WINDOW_COORD_NORMS:
            raise ValueError(f'window_coord_norm must be one of {WINDOW_COORD_NORMS}, '
                             f'got {window_coord_norm!r}')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.in_channels = in_channels
        self.check_finite = check_finite

        depths, dim = settings['depths'], settings['dim']
        if drop_path_rate is None:
            drop_path_rate = settings['drop_path_rate']
        num_blocks = sum(depths)
        drop_paths = [drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
        self.stem = ConvStem(in_channels, settings['in_dim'], dim, conv_norm_cfg)
        self.stages = nn.ModuleList()
        self.out_channels = []
        for i, depth in enumerate(depths):
            stage_dim = dim * 2**i
            stage_drop_paths = drop_paths[sum(depths[:i]):sum(depths[:i + 1])]
            downsample = i < NUM_STAGES - 1
            if i < CONV_STAGES:
                pad_to = settings['window_size'][i] if pad_conv_stages else 0
                stage = ConvStage(stage_dim, depth, stage_drop_paths, downsample, with_cp, pad_to,
                                  conv_norm_cfg)
            else:
                stage = TransformerStage(
                    stage_dim, depth, settings['num_heads'][i], settings['window_size'][i],
                    settings['ct_size'], settings['hat'][i], settings['propagation'],
                    settings['mlp_ratio'], settings['layer_scale'], stage_drop_paths, downsample,
                    window_coord_norm, with_cp)
            self.stages.append(stage)
            self.out_channels.append(stage_dim)
        for i in out_indices:
            self.add_module(f'norm{i}', build_norm_layer(norm_cfg, self.out_channels[i])[1])
        self._freeze_stages()

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f'FasterViT expects a (B, C, H, W) batch, got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'FasterViT was built for {self.in_channels}-channel images, got '
                             f'{x.shape[1]} channels (input shape {tuple(x.shape)})')
        if min(x.shape[2:]) < MIN_INPUT_SIZE:
            raise ValueError(f'FasterViT needs inputs of at least {MIN_INPUT_SIZE}x'
                             f'{MIN_INPUT_SIZE} pixels (stride 32), got {tuple(x.shape[2:])}')
        if self.check_finite and not torch.isfinite(x).all():
            raise ValueError(f'FasterViT input holds NaN or infinite values '
                             f'({int((~torch.isfinite(x)).sum())} of {x.numel()})')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if not compat.is_compiling():
            self.check_input(x)
            warn_if_bf16_is_emulated(x)
        # Features leave in the memory format the images came in (like mmdet's ResNet): a channel
        # LayerNorm returns a channels-last view, and mmcv's RoIAlign reads any input as a
        # contiguous NCHW array.
        memory_format = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                         and not x.is_contiguous() else torch.contiguous_format)
        x = self.stem(x)
        last = max(self.out_indices)
        outs = []
        for i, stage in enumerate(self.stages[:last + 1]):
            features, x = stage(x, downsample=i < last)
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}')
                outs.append(norm(features).contiguous(memory_format=memory_format))
        return tuple(outs)

    def _freeze_stages(self):
        frozen = []
        if self.frozen_stages >= 0:
            frozen.append(self.stem)
        for i in range(self.frozen_stages):
            frozen.append(self.stages[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            from mmfastervit.checkpoint.official import load_pretrained_backbone
            load_pretrained_backbone(self, self.init_cfg['checkpoint'],
                                     self.init_cfg.get('prefix', ''))
            return
        if self.init_cfg is not None:
            super().init_weights()
            return
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
