"""Everything in mmfastervit that depends on the torch version, in one place.

Supported: torch 2.1 to 2.13 (tested at both ends). Code elsewhere in the package calls the
functions here instead of torch APIs that appeared after torch 2.1; a test walks the package's
source and fails on any such call outside this module. A feature that an installed torch lacks is
refused here with a message naming the torch it needs, never by a crash inside ``forward``.
"""
import codecs
import collections
import contextlib
import inspect
from typing import IO, Any, Callable, Dict, Iterator, Optional, Sequence, Tuple, Union

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


# is_compiling(): True while TorchDynamo traces the caller (torch.compile, torch.export). Taken as
# torch's own function, which Dynamo recognises and folds into a constant while tracing.
if hasattr(torch.compiler, 'is_compiling'):  # torch >= 2.3
    is_compiling = torch.compiler.is_compiling
else:
    from torch._dynamo import is_compiling


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


def has_fused_optimizer(optimizer: type, device_type: str) -> bool:
    """Whether ``optimizer(..., fused=True)`` (a ``torch.optim`` class) runs on ``device_type``:
    where the class takes ``fused`` at all, on CUDA, and on the CPU from torch 2.4."""
    if 'fused' not in inspect.signature(optimizer.__init__).parameters:
        return False
    if device_type == 'cpu':
        return TORCH_VERSION >= (2, 4)
    return device_type == 'cuda'


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


def export_onnx_with_dynamic_sizes(model: torch.nn.Module, example: torch.Tensor, path: str,
                                   dynamic_dims: Dict[int, Tuple[str, int, int]],
                                   **kwargs) -> None:
    """``torch.onnx.export`` through TorchDynamo, the input's dimensions ``{dim: (name, min,
    max)}`` symbolic, inside :func:`exporting` (so the backbone takes its export paths). Refused
    with a clear error on a torch that cannot do it."""
    require_dynamo_onnx_export()
    dims = {dim: torch.export.Dim(name, min=low, max=high)
            for dim, (name, low, high) in dynamic_dims.items()}
    with torch.no_grad(), exporting():
        torch.onnx.export(model, (example, ), path, dynamo=True, dynamic_shapes={'x': dims},
                          **kwargs)


def add_load_state_dict_pre_hook(module: torch.nn.Module, hook: Callable) -> None:
    """Call ``hook(module, state_dict, prefix, ...)`` before ``module`` loads a state dict (public
    from torch 2.5; the private method of torch 2.1-2.4 takes ``with_module`` to pass the module)."""
    if hasattr(module, 'register_load_state_dict_pre_hook'):
        module.register_load_state_dict_pre_hook(hook)
    else:
        module._register_load_state_dict_pre_hook(hook, with_module=True)


# ----------------------------------------------------------------------------------------------
# Checkpoint loading (mmfastervit.checkpoint.safe_load)
# ----------------------------------------------------------------------------------------------

# From torch 2.6 on, torch.load(weights_only=True) accepts extra allowed globals through
# torch.serialization.safe_globals, entries named explicitly as (callable, 'module.name') included.
# Older torches load through safe_load's restricted unpickler (torch.load's pickle_module) instead,
# with the same allow-list: torch's own (:func:`torch_safe_globals`) and safe_load's.
MIN_TORCH_SAFE_GLOBALS = (2, 6)
HAS_SAFE_GLOBALS = TORCH_VERSION >= MIN_TORCH_SAFE_GLOBALS


def load_with_safe_globals(file: IO[bytes], map_location: Any,
                           safe_globals: Sequence[Union[Callable, Tuple[Callable, str]]]) -> Any:
    """``torch.load(weights_only=True)`` with ``safe_globals`` allowed as well (torch >= 2.6)."""
    already_allowed = torch.serialization.get_safe_globals()
    missing = [entry for entry in safe_globals if entry not in already_allowed]
    with torch.serialization.safe_globals(missing):
        return torch.load(file, map_location=map_location, weights_only=True)


def torch_safe_globals() -> Dict[str, Any]:
    """What torch's ``weights_only`` unpickler allows by default, by ``'module.name'``: this torch's
    own list, completed with the plain data types torch 2.6 and later allow as well (older lists
    lack ``set``, ``bytes`` and some dtypes, among others)."""
    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    for data_type in (collections.Counter, collections.OrderedDict, torch.device, codecs.encode,
                      bytearray, set, complex):
        allowed[f'{data_type.__module__}.{data_type.__qualname__}'] = data_type
    allowed.update((str(dtype), dtype) for dtype in vars(torch).values()
                   if isinstance(dtype, torch.dtype))
    return allowed
