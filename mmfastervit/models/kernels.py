"""How some FasterViT layers are computed, kept apart from what the network computes.

Each function here computes exactly the layer it stands for (up to float rounding); only the
kernels differ with the device, the precision and the mode (training, inference, graph export):

- :class:`TokenLinear`: a linear layer over tokens, run as a oneDNN 1x1 convolution where that
  kernel is the faster one.
- :func:`conv_norm`: a convolution followed by BatchNorm, as one convolution with the norm folded
  in when the norm uses its running statistics.
- :func:`average_pool`: average pooling that ONNX export can express when the kernel size depends
  on the input size.

Nothing is cached between calls: whatever is derived from weights is derived again at every call,
from the weights as they are then, so no way of changing weights can leave it stale.
"""
import functools
import warnings
from typing import FrozenSet, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmfastervit import compat


@functools.lru_cache(maxsize=None)
def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (empty elsewhere)."""
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith(('flags', 'Features')):
                    return frozenset(line.split(':', 1)[1].split())
    except OSError:
        pass
    return frozenset()


# oneDNN's 1x1-convolution kernels beat the BLAS GEMM behind F.linear on token features only where
# they run with AVX-512 (measured: see the README's benchmarks per CPU kind).
CPU_TOKEN_CONV = compat.cpu_capability().startswith('AVX512')
# Without these, bf16 arithmetic is emulated in fp32 and runs several times slower than fp32.
CPU_NATIVE_BF16 = bool(cpu_flags() & {'avx512_bf16', 'amx_bf16', 'bf16'})


def warn_if_bf16_is_emulated(x: torch.Tensor) -> None:
    """Warn (once) when bf16 autocast runs on a CPU that has no bf16 instructions."""
    if (x.device.type == 'cpu' and not CPU_NATIVE_BF16
            and compat.autocast_dtype('cpu') == torch.bfloat16):
        warnings.warn('bf16 autocast on a CPU without bf16 instructions (no avx512_bf16/amx_bf16 '
                      'flag): bf16 is emulated and will be several times slower than fp32.',
                      stacklevel=3)


class TokenLinear(nn.Linear):
    """``nn.Linear`` over token features (..., C).

    In fp32 inference on a CPU with AVX-512 the product runs as a 1x1 convolution over a
    channels-last view of the tokens (an image of M pixels with C channels, no copy): the same
    arithmetic, by oneDNN's convolution kernels. Everywhere else (training, GPUs, autocast, CPUs
    without AVX-512, tracing and export) it is ``F.linear``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_conv_kernel(x):
            return linear_as_conv(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)

    @staticmethod
    def use_conv_kernel(x: torch.Tensor) -> bool:
        return (CPU_TOKEN_CONV and x.device.type == 'cpu' and x.dtype == torch.float32
                and not torch.is_grad_enabled() and compat.autocast_dtype('cpu') is None
                and not compat.is_exporting() and not torch.jit.is_tracing())


def linear_as_conv(x: torch.Tensor, weight: torch.Tensor,
                   bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed as a 1x1 convolution over the M = x.numel() / C
    tokens seen as the pixels of a channels-last (1, C, M, 1) image, a view of ``x``."""
    out_features, in_features = weight.shape
    pixels = x.reshape(1, -1, 1, in_features).permute(0, 3, 1, 2)
    out = F.conv2d(pixels, weight[:, :, None, None], bias)
    return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], out_features)


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d,
                    scale: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the single convolution equal to ``conv``, then ``norm`` with its running
    statistics, then a per-channel ``scale``."""
    factor = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    bias = norm.bias - norm.running_mean * factor
    if conv.bias is not None:
        bias = bias + conv.bias * factor
    if scale is not None:
        factor, bias = factor * scale, bias * scale
    return conv.weight * factor.view(-1, 1, 1, 1), bias


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: torch.Tensor,
              scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``norm(conv(x)) * scale`` (``scale``: per channel, optional).

    When the norm is a BatchNorm normalising with its running statistics (eval mode), it is folded
    into the convolution's weights at this call: work of the order of the weights, which saves a
    pass over the feature map, and is differentiable, so frozen or ``norm_eval`` norms train
    through it.
    """
    if norm.training or getattr(norm, 'running_var', None) is None:
        x = norm(conv(x))
        return x if scale is None else x * scale.view(1, -1, 1, 1)
    weight, bias = fold_batch_norm(conv, norm, scale)
    return conv._conv_forward(x, weight, bias)


def at_least_one(n: Union[int, torch.SymInt]) -> Union[int, torch.SymInt]:
    """``max(n, 1)`` for a size. A symbolic size (ONNX export with dynamic height and width) goes
    through ``torch.sym_max``, which keeps it symbolic where ``max`` would fix it to the example
    input's value; a plain int uses ``max``, which ``torch.compile`` traces on every supported
    torch."""
    return torch.sym_max(n, 1) if isinstance(n, torch.SymInt) else max(n, 1)


def average_pool(x: torch.Tensor, kernel: Tuple[int, int], stride: Tuple[int, int],
                 cells: Tuple[int, int]) -> torch.Tensor:
    """``F.avg_pool2d(x, kernel, stride)`` giving ``cells`` outputs per axis. Under ONNX export,
    whose pooling kernels have a fixed size while this kernel grows with the input, it is computed
    from cumulative sums instead."""
    if not compat.is_exporting():
        return F.avg_pool2d(x, kernel, stride)
    for dim, k, s, n in zip((2, 3), kernel, stride, cells):
        sums = F.pad(x.cumsum(dim), (1, 0) if dim == 3 else (0, 0, 1, 0))
        starts = torch.arange(n, device=x.device) * s
        x = (sums.index_select(dim, starts + k) - sums.index_select(dim, starts)) / k
    return x
