"""Everything in mmfastervit that depends on the torch version, in one place.

Supported: torch 2.1 to 2.13 (tested at both ends). Code elsewhere in the package calls the
functions here instead of torch APIs that appeared after torch 2.1; a test walks the package's
source and fails on any such call outside this module. A feature that an installed torch lacks is
refused here with a message naming the torch it needs, never by a crash inside ``forward``.
"""
import contextlib
from typing import Iterator, Optional, Tuple

import torch

MIN_TORCH = (2, 1)
MAX_TESTED_TORCH = (2, 13)
# torch.onnx.export(dynamo=True) with torch.export.Dim dynamic shapes.
MIN_TORCH_DYNAMO_ONNX = (2, 6)


def torch_version(version: str = torch.__version__) -> Tuple[int, int]:
    """(major, minor) of a torch version string such as ``'2.1.2+cu121'``."""
    major, minor = version.split('+')[0].split('.')[:2]
    return int(major), int(''.join(ch for ch in minor if ch.isdigit()))


TORCH_VERSION = torch_version()


if hasattr(torch.compiler, 'is_compiling'):  # torch >= 2.3
    is_compiling = torch.compiler.is_compiling
else:
    from torch._dynamo import is_compiling
is_compiling.__doc__ = 'True while TorchDynamo traces the caller (torch.compile, torch.export).'


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast computes in on ``device_type`` ('cpu', 'cuda'), or None when it is off."""
    if TORCH_VERSION >= (2, 4):
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    if device_type == 'cuda':
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    return None


def cpu_capability() -> str:
    """The vector instruction set ATen's CPU kernels use: 'AVX512', 'AVX2', 'DEFAULT', ..."""
    try:
        from torch.backends.cpu import get_cpu_capability
    except ImportError:
        return 'DEFAULT'
    return get_cpu_capability()


_exporting = False


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Marks a model export (ONNX): inside, the backbone takes the graph-export paths (plain
    ``F.linear``, pooling with symbolic kernel sizes). ``tools/export_onnx.py`` enters it; torch's
    own ``torch.compiler.is_exporting()`` is not used because some releases also report True in
    plain ``torch.compile``."""
    global _exporting
    previous, _exporting = _exporting, True
    try:
        yield
    finally:
        _exporting = previous


def is_exporting() -> bool:
    """True inside :func:`exporting`."""
    return _exporting


def require_dynamo_onnx_export() -> None:
    """Raise a clear error when this torch cannot export with dynamic height and width."""
    if TORCH_VERSION < MIN_TORCH_DYNAMO_ONNX:
        raise RuntimeError(
            f'ONNX export with dynamic height and width uses torch.onnx.export(dynamo=True), which '
            f'needs torch >= {".".join(map(str, MIN_TORCH_DYNAMO_ONNX))}; this is torch '
            f'{torch.__version__}.')
