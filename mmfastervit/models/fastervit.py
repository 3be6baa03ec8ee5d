"""FasterViT backbone (Hatamizadeh et al., "FasterViT: Fast Vision Transformers with Hierarchical
Attention", ICLR 2024, arXiv 2306.06189) for MMDetection and MMSegmentation.

The network is a hybrid: a strided conv stem, two stages of residual conv blocks at strides 4 and 8,
then two transformer stages at strides 16 and 32 whose blocks attend inside local ``w x w`` windows.
Hierarchical attention (HAT) gives every window a few *carrier tokens*: all carrier tokens of an image
attend to each other globally (cheap: there are few), then each window attends over its own tokens
together with its carriers, so information crosses window borders at almost no cost.

Every shape-dependent quantity (window padding, carrier-token grid and pooling geometry, positional
terms, attention biases) is derived from the actual feature size in ``forward``: one model serves any
input size, and nothing shape-dependent is stored in the state dict.
"""
import math
from functools import partial
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

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


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (a subclass of ``nn.LayerNorm`` so that optimizer
    constructors recognise it as a norm layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


MODELS.register_module('LN2d', module=LayerNorm2d, force=True)


class InferenceCache:
    """A value derived from some tensors of a module (its weights), kept between inference calls.

    Only for inference: the module in eval mode, autograd off, and not being traced by
    ``torch.compile`` or export (:meth:`usable`). The value is keyed by the caller's key, the
    autocast state and the storage, version counter and dtype of every source tensor, so any change
    of the sources (``load_state_dict``, an optimizer step, ``.to()``, an in-place edit) recomputes
    it. One value at a time; not part of the state dict.
    """

    def __init__(self):
        self._key = None
        self._value = None

    @staticmethod
    def usable(training: bool) -> bool:
        return not (training or torch.is_grad_enabled() or torch.compiler.is_compiling())

    def get(self, key: Any, sources: Iterable[torch.Tensor], compute: Callable[[], Any]) -> Any:
        sources = tuple(sources)
        device_type = sources[0].device.type
        autocast = (torch.get_autocast_dtype(device_type)
                    if torch.is_autocast_enabled(device_type) else None)
        full_key = (key, autocast,
                    tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in sources))
        if full_key != self._key:
            self.clear()
            self._value = compute()
            self._key = full_key
        return self._value

    def clear(self) -> None:
        self._key = self._value = None

    def __len__(self) -> int:
        return int(self._key is not None)


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d,
                    scale: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the single convolution equal to ``conv``, then ``norm`` in eval mode, then
    a per-channel ``scale``."""
    factor = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    bias = norm.bias - norm.running_mean * factor
    if conv.bias is not None:
        bias = bias + conv.bias * factor
    if scale is not None:
        factor, bias = factor * scale, bias * scale
    return conv.weight * factor.view(-1, 1, 1, 1), bias


class ConvBNLayers(nn.Module):
    """Base of the modules made of convolutions each followed by BatchNorm (``conv{i}``,
    ``norm{i}``). In inference each pair runs as one convolution whose weights fold the norm in
    (cached): the norm's pass over the feature map, memory-bound on the large maps of the conv
    stages, disappears. Training, autograd and ``torch.compile`` (whose freezing folds the norms
    itself) run the layers as they are.
    """

    def __init__(self):
        super().__init__()
        self._folded = InferenceCache()

    def conv_bn_pairs(self) -> List[Tuple[nn.Conv2d, nn.BatchNorm2d, Optional[torch.Tensor]]]:
        """(conv, norm, per-channel scale after the norm or None), in order."""
        raise NotImplementedError

    def conv_bn_layers(self) -> List[Callable[[torch.Tensor], torch.Tensor]]:
        """One function per (conv, norm, scale), in order: the folded convolution in inference,
        else the layers as they are. Called once per forward."""
        pairs = self.conv_bn_pairs()
        if not InferenceCache.usable(pairs[0][1].training):
            return [partial(conv_norm_scale, *pair) for pair in pairs]
        sources = [t for c, n, g in pairs
                   for t in (c.weight, c.bias, n.weight, n.bias, n.running_mean, n.running_var, g)
                   if t is not None]
        folded = self._folded.get(None, sources, lambda: [fold_batch_norm(*p) for p in pairs])
        return [partial(conv._conv_forward, weight=weight, bias=bias)
                for (conv, _, _), (weight, bias) in zip(pairs, folded)]


def conv_norm_scale(conv: nn.Conv2d, norm: nn.BatchNorm2d, scale: Optional[torch.Tensor],
                    x: torch.Tensor) -> torch.Tensor:
    x = norm(conv(x))
    return x if scale is None else x * scale.view(1, -1, 1, 1)


class ConvStem(ConvBNLayers):
    """Two stride-2 3x3 convolutions with BN and ReLU: image -> stride-4 features."""

    def __init__(self, in_channels: int, hidden_dim: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_dim, 3, 2, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(hidden_dim, eps=1e-4)
        self.conv2 = nn.Conv2d(hidden_dim, dim, 3, 2, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(dim, eps=1e-4)

    def conv_bn_pairs(self):
        return [(self.conv1, self.norm1, None), (self.conv2, self.norm2, None)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.conv_bn_layers()
        return F.relu(second(F.relu(first(x))))


class ConvBlock(ConvBNLayers):
    """x + DropPath(gamma * BN(conv3x3(GELU(BN(conv3x3(x))))))."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale: Optional[float] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm1 = nn.BatchNorm2d(dim, eps=1e-5)
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm2 = nn.BatchNorm2d(dim, eps=1e-5)
        self.gamma = nn.Parameter(torch.full((dim, ), layer_scale)) if layer_scale else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def conv_bn_pairs(self):
        return [(self.conv1, self.norm1, None), (self.conv2, self.norm2, self.gamma)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.conv_bn_layers()
        return x + self.drop_path(second(F.gelu(first(x))))


class Downsample(nn.Module):
    """Channel LayerNorm then a stride-2 3x3 conv doubling the channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.conv = nn.Conv2d(dim, 2 * dim, 3, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


class TokenLinear(nn.Linear):
    """``nn.Linear`` over token features (..., C).

    On the CPU in fp32 (eager or ``torch.compile``) the product runs as a 1x1 convolution over a
    channels-last view of the tokens (an image of M pixels with C channels; no copy): the same
    arithmetic, computed by oneDNN's JIT kernels, which on AVX-512 CPUs are about twice as fast as
    the BLAS GEMM behind ``F.linear`` (compiled FasterViT-0 fp32: 1.7x faster than with
    ``F.linear``). Elsewhere (GPU, autocast, tracing, export) it is ``F.linear``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != 'cpu' or x.dtype != torch.float32 or torch.is_autocast_enabled('cpu')
                or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
                or torch.compiler.is_exporting()):
            return F.linear(x, self.weight, self.bias)
        pixels = x.reshape(1, -1, 1, self.in_features).permute(0, 3, 1, 2)
        out = F.conv2d(pixels, self.weight[:, :, None, None], self.bias)
        return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], self.out_features)


class PositionMLP(nn.Module):
    """2 -> 512 -> ReLU -> out MLP mapping 2-D coordinates to a positional term (token embeddings or
    per-head attention biases)."""

    def __init__(self, out_dim: int, hidden_dim: int = 512):
        super().__init__()
        self.fc1 = nn.Linear(2, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim, bias=False)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(coords)))


def grid_positions(rows: int, cols: int, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row and column index of every cell of a ``rows x cols`` grid, in row-major order."""
    row, col = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device),
                              indexing='ij')
    return row.reshape(-1), col.reshape(-1)


def at_least_one(n: int) -> int:
    """``max(n, 1)`` for a size. A symbolic size (ONNX export with dynamic height and width) goes
    through ``torch.sym_max``, which keeps it symbolic where ``max`` would fix it to the example
    input's value; a plain int uses ``max``, which ``torch.compile`` traces in every torch version
    (older ones break the graph at ``torch.sym_max``)."""
    return torch.sym_max(n, 1) if isinstance(n, torch.SymInt) else max(n, 1)


def axis_coords(index: torch.Tensor, n: int) -> torch.Tensor:
    """Grid index along an axis of length n -> ``(i - n//2) / (n//2)`` (about [-1, 1]; 0 if n=1)."""
    half = n // 2
    return (index.float() - half) / at_least_one(half)


def position_coords(positions: Tuple[torch.Tensor, torch.Tensor], rows: int,
                    cols: int) -> torch.Tensor:
    """(N, 2) normalised (row, col) coordinates of tokens at the given grid positions."""
    return torch.stack([axis_coords(positions[0], rows), axis_coords(positions[1], cols)], dim=-1)


def log_relative_coords(rows: int, cols: int, device=None) -> torch.Tensor:
    """((2*rows-1)*(2*cols-1), 2) relative offsets of a grid, normalised per axis to [-1, 1] and
    log-spaced as in Swin-V2's continuous position bias: sign(d) * log2(1 + 8|d|) / 3."""
    axes = []
    for n in (rows, cols):
        offsets = torch.arange(-(n - 1), n, dtype=torch.float32, device=device)
        axes.append(offsets / at_least_one(n - 1))
    table = torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1).reshape(-1, 2) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0


def relative_position_index(positions: Tuple[torch.Tensor, torch.Tensor], rows: int,
                            cols: int) -> torch.Tensor:
    """(N, N) index into the relative-offset table of a ``rows x cols`` grid for tokens at the given
    grid positions (in any order)."""
    token_rows, token_cols = positions
    d_row = token_rows[:, None] - token_rows[None, :] + rows - 1
    d_col = token_cols[:, None] - token_cols[None, :] + cols - 1
    return d_row * (2 * cols - 1) + d_col


def relative_position_tables(rows: int, cols: int,
                             positions: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                             device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The relative-offset table of a ``rows x cols`` grid (:func:`log_relative_coords`) and the
    (N, N) index into it of tokens at ``positions`` (default: all cells, row-major)."""
    if positions is None:
        positions = grid_positions(rows, cols, device)
    return log_relative_coords(rows, cols, device), relative_position_index(positions, rows, cols)


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
        """(1, heads, P+N, P+N) bias of N grid tokens, from their grid's relative-offset table and
        index (:func:`relative_position_tables`); the ``num_prefix`` tokens in front of the grid
        tokens (carrier tokens of a window) get no bias."""
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
        if torch.compiler.is_compiling():
            # Written out for torch.compile and export: inductor fuses the scale, bias and softmax
            # between two batched matmuls, which on the CPU beats the fused kernel for windows of
            # ~50 tokens (with the folded window terms of HATBlock, compiled FasterViT-0 in bf16
            # went from 102 to 114 images/s on 2 cores), and the exporter mis-derives the layout
            # of the fused kernel's output for symbolic sizes.
            attn = (q @ k.transpose(-2, -1)) * q.shape[-1]**-0.5 + bias.to(q.dtype)
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


def layer_scale_param(dim: int, init: Optional[float]) -> Optional[nn.Parameter]:
    return nn.Parameter(torch.full((dim, ), init)) if init else None


def scaled(x: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
    return x if gamma is None else x * gamma


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: a positional MLP term on the grid tokens, then attention and MLP
    residuals with optional layer scales."""

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


class CarrierLayer(TransformerLayer):
    """Global attention among all carrier tokens of an image (the cross-window path of HAT)."""

    def forward(self, carriers: torch.Tensor, terms: 'PositionalTerms') -> torch.Tensor:
        return self.residuals(carriers + terms.carrier_pos, terms.carrier_bias)


class PositionalTerms(NamedTuple):
    """Shape-dependent terms of one HAT block, derived from its weights and the feature geometry."""
    window_pos: torch.Tensor  # (w*w, C) added to every window's tokens
    window_bias: torch.Tensor  # (1, heads, P+w*w, P+w*w), P carriers per window (0 without HAT)
    carrier_pos: Optional[torch.Tensor] = None  # (T, C) for the T carriers of an image
    carrier_bias: Optional[torch.Tensor] = None  # (1, heads, T, T)
    propagation_index: Optional[torch.Tensor] = None  # (w*w, ) carrier of each window token


class WindowGeometry(NamedTuple):
    """How a transformer stage tiles its (padded) feature map."""
    window: int
    rows: int  # windows along H
    cols: int  # windows along W
    ct_size: int  # carriers per window along each axis; 0 without carrier tokens

    def carrier_positions(self, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(row, col), in the (rows*ct) x (cols*ct) carrier grid, of each carrier token in the
        window-major order carriers are kept in (window by window, row-major inside a window)."""
        ct = self.ct_size
        win_r, win_c, r, c = torch.meshgrid(
            *(torch.arange(n, device=device) for n in (self.rows, self.cols, ct, ct)),
            indexing='ij')
        return (win_r * ct + r).reshape(-1), (win_c * ct + c).reshape(-1)


class HATBlock(TransformerLayer):
    """Hierarchical attention block.

    With carrier tokens: the carriers first attend globally (``carrier``), then are put in front of
    their window's tokens for the window attention, and split off again. The last block of a stage
    with ``propagate`` adds each window's carriers, nearest-upsampled to the window, to its tokens.
    """

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float, drop_path: float,
                 layer_scale: Optional[float], with_carriers: bool, propagate: bool):
        super().__init__(dim, num_heads, mlp_ratio, drop_path, layer_scale)
        self.carrier = CarrierLayer(dim, num_heads, mlp_ratio, drop_path,
                                    layer_scale) if with_carriers else None
        self.propagate = propagate
        # The window grid's coordinate tables are fixed, so they are (non-persistent) buffers: in
        # torch.compile with inductor's freezing, the positional MLPs applied to buffers fold into
        # constants, where values derived from torch.arange in the graph are not folded.
        offsets, index = relative_position_tables(window, window)
        self.register_buffer(
            'window_coords', position_coords(grid_positions(window, window), window, window),
            persistent=False)
        self.register_buffer('window_offsets', offsets, persistent=False)
        self.register_buffer('window_offset_index', index, persistent=False)
        self._terms_cache = InferenceCache()

    def positional_terms(self, geometry: WindowGeometry) -> PositionalTerms:
        """The block's shape-dependent terms for ``geometry``.

        In inference (eval mode, no autograd) they are cached per geometry, dtype and device, and
        keyed by the version counters of the weights they come from, so that any change of those
        weights (``load_state_dict``, an optimizer step, an in-place edit) recomputes them. In
        training, and while tracing for ``torch.compile``/export, they are computed in the graph.
        """
        if not InferenceCache.usable(self.training):
            return self.compute_positional_terms(geometry)
        return self._terms_cache.get(geometry, self._positional_weights(),
                                     lambda: self.compute_positional_terms(geometry))

    def _positional_weights(self):
        mlps = [self.pos_mlp, self.attn.rel_pos_mlp]
        if self.carrier is not None:
            mlps += [self.carrier.pos_mlp, self.carrier.attn.rel_pos_mlp]
        for mlp in mlps:
            yield from mlp.parameters()

    def compute_positional_terms(self, geometry: WindowGeometry) -> PositionalTerms:
        ct = geometry.ct_size
        device = self.norm1.weight.device
        window_pos = self.pos_mlp(self.window_coords)
        window_tables = (self.window_offsets, self.window_offset_index)
        if not ct:
            return PositionalTerms(window_pos, self.attn.position_bias(*window_tables))
        rows, cols = geometry.rows * ct, geometry.cols * ct
        positions = geometry.carrier_positions(device)
        return PositionalTerms(
            window_pos, self.attn.position_bias(*window_tables, num_prefix=ct * ct),
            self.carrier.pos_mlp(position_coords(positions, rows, cols)),
            self.carrier.attn.position_bias(
                *relative_position_tables(rows, cols, positions, device)),
            nearest_carrier_index(geometry, device) if self.propagate else None)

    def train(self, mode: bool = True):
        self._terms_cache.clear()
        return super().train(mode)

    def forward(self, x: torch.Tensor, carriers: Optional[torch.Tensor], terms: PositionalTerms,
                geometry: WindowGeometry) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """x: (B*nW, w*w, C) window tokens; carriers: (B, nW*ct*ct, C) in window-major order."""
        x = x + terms.window_pos
        if carriers is None:
            return self.residuals(x, terms.window_bias), None
        batch, num_carriers, dim = carriers.shape
        per_window = geometry.ct_size**2
        carriers = self.carrier(carriers, terms)
        x = torch.cat([carriers.reshape(-1, per_window, dim), x], dim=1)
        x = self.residuals(x, terms.window_bias)
        window_carriers, x = x.split([per_window, x.shape[1] - per_window], dim=1)
        if self.propagate:
            x = x + scaled(window_carriers[:, terms.propagation_index], self.carrier.gamma1)
        return x, window_carriers.reshape(batch, num_carriers, dim)


def nearest_carrier_index(geometry: WindowGeometry, device) -> torch.Tensor:
    """For each token of a window, its carrier under nearest-neighbour upsampling of the window's
    ct x ct carriers to w x w (PyTorch's 'nearest' rule, so it equals ``F.interpolate``)."""
    ct, w = geometry.ct_size, geometry.window
    grid = torch.arange(ct * ct, dtype=torch.float32, device=device).view(1, 1, ct, ct)
    return F.interpolate(grid, size=(w, w), mode='nearest').long().view(-1)


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
        (k_h, s_h, n_h), (k_w, s_w, n_w) = (
            self.pooling(length, geometry.window, geometry.ct_size) for length in x.shape[2:])
        x = self.conv(x)
        if torch.compiler.is_exporting():
            # ONNX pooling kernels are static; the kernel here grows with the input size
            pooled = box_mean(box_mean(x, k_h, s_h, n_h, dim=2), k_w, s_w, n_w, dim=3)
        else:
            pooled = F.avg_pool2d(x, (k_h, k_w), (s_h, s_w))
        batch, dim = pooled.shape[:2]
        ct = geometry.ct_size
        pooled = pooled.view(batch, dim, geometry.rows, ct, geometry.cols, ct)
        return pooled.permute(0, 2, 4, 3, 5, 1).reshape(batch, -1, dim)


def box_mean(x: torch.Tensor, kernel: int, stride: int, cells: int, dim: int) -> torch.Tensor:
    """Average pooling along one axis through a cumulative sum, for kernels of symbolic size."""
    sums = F.pad(x.cumsum(dim), (1, 0) if dim == x.dim() - 1 else (0, 0, 1, 0))
    starts = torch.arange(cells, device=x.device) * stride
    return (sums.index_select(dim, starts + kernel) - sums.index_select(dim, starts)) / kernel


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


class ConvStage(nn.Module):

    def __init__(self, dim: int, depth: int, drop_paths: Sequence[float],
                 downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(ConvBlock(dim, dp) for dp in drop_paths[:depth])
        self.downsample = Downsample(dim) if downsample else None

    def forward_blocks(self, x: torch.Tensor, with_cp: bool) -> torch.Tensor:
        for block in self.blocks:
            x = cp.checkpoint(block, x, use_reentrant=False) if with_cp else block(x)
        return x


class TransformerStage(nn.Module):
    """Window-attention stage; with ``hat`` it uses carrier tokens whenever the (padded) map holds
    more than one window along an axis."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, ct_size: int,
                 hat: bool, propagation: bool, mlp_ratio: float, layer_scale: Optional[float],
                 drop_paths: Sequence[float], downsample: bool):
        super().__init__()
        self.window = window
        self.ct_size = ct_size if hat else 0
        self.carrier_init = CarrierTokenInit(dim) if hat else None
        self.blocks = nn.ModuleList(
            HATBlock(dim, num_heads, window, mlp_ratio, drop_paths[i], layer_scale,
                     with_carriers=hat, propagate=propagation and i == depth - 1)
            for i in range(depth))
        self.downsample = Downsample(dim) if downsample else None

    def geometry(self, height: int, width: int) -> WindowGeometry:
        rows, cols = math.ceil(height / self.window), math.ceil(width / self.window)
        with_carriers = self.ct_size and (rows > 1 or cols > 1)
        return WindowGeometry(self.window, rows, cols, self.ct_size if with_carriers else 0)

    def forward_blocks(self, x: torch.Tensor, with_cp: bool) -> torch.Tensor:
        height, width = x.shape[2:]
        geometry = self.geometry(height, width)
        padded_h, padded_w = geometry.rows * self.window, geometry.cols * self.window
        x = F.pad(x, (0, padded_w - width, 0, padded_h - height))
        carriers = self.carrier_init(x, geometry) if geometry.ct_size else None
        x = window_partition(x, self.window)
        for block in self.blocks:
            terms = block.positional_terms(geometry)
            if with_cp:
                x, carriers = cp.checkpoint(block, x, carriers, terms, geometry,
                                            use_reentrant=False)
            else:
                x, carriers = block(x, carriers, terms, geometry)
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
        check_finite (bool): Validate that inputs hold no NaN/inf values (a debugging aid that
            costs a pass over the input). Default: False.
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
                 check_finite: bool = False,
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
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.in_channels = in_channels
        self.check_finite = check_finite

        depths, dim = settings['depths'], settings['dim']
        if drop_path_rate is None:
            drop_path_rate = settings['drop_path_rate']
        num_blocks = sum(depths)
        drop_paths = [drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
        self.stem = ConvStem(in_channels, settings['in_dim'], dim)
        self.stages = nn.ModuleList()
        self.out_channels = []
        for i, depth in enumerate(depths):
            stage_dim = dim * 2**i
            stage_drop_paths = drop_paths[sum(depths[:i]):sum(depths[:i + 1])]
            downsample = i < NUM_STAGES - 1
            if i < CONV_STAGES:
                stage = ConvStage(stage_dim, depth, stage_drop_paths, downsample)
            else:
                stage = TransformerStage(
                    stage_dim, depth, settings['num_heads'][i], settings['window_size'][i],
                    settings['ct_size'], settings['hat'][i], settings['propagation'],
                    settings['mlp_ratio'], settings['layer_scale'], stage_drop_paths, downsample)
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
        if not torch.compiler.is_compiling():
            self.check_input(x)
        x = self.stem(x)
        outs = []
        for i in range(max(self.out_indices) + 1):
            if i:
                x = self.stages[i - 1].downsample(x)
            x = self.stages[i].forward_blocks(x, self.with_cp and self.training)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
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
