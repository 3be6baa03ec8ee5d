"""Checkpoint loading that never lets a checkpoint file run code.

A checkpoint is a pickle, and unpickling can call any function the file names. Since torch 2.6,
``torch.load`` defaults to ``weights_only=True`` and refuses everything but tensors and plain
containers. MMEngine 0.10 calls ``torch.load`` without that argument, so it can no longer read its
own checkpoints (they hold numpy values and ``HistoryBuffer`` objects) nor timm-style ImageNet
checkpoints (they hold the training ``argparse.Namespace``); and for URLs it goes through
``torch.hub.load_state_dict_from_url``, which still unpickles anything.

:func:`install` re-registers every scheme of MMEngine's ``CheckpointLoader`` (local files, URLs,
``torchvision://``, ``open-mmlab://``, ``mmcls://``, ``pavi://``, ``s3://``), and with it
``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained')`` and ``load_checkpoint``, with
loaders that all read through :func:`safe_torch_load`: ``torch.load(weights_only=True)`` plus a
short, fixed list of globals that only rebuild data (:func:`_allowed_globals`). A file that needs
anything else is refused with :class:`UnsafeCheckpointError`, unless the user trusts it explicitly,
by path or SHA-256 digest, with :func:`trust_checkpoint` or the environment variable
``MMFASTERVIT_TRUSTED_CHECKPOINTS`` (entries separated by ``os.pathsep``).
"""
import argparse
import contextlib
import hashlib
import importlib
import io
import os
import os.path as osp
import pickle
import re
from tempfile import TemporaryDirectory
from typing import IO, Any, Callable, Dict, List, Optional, Set, Tuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import (CheckpointLoader, _get_mmengine_home,
                                        _process_mmcls_checkpoint,
                                        get_deprecated_model_names,
                                        get_external_models, get_mmcls_models,
                                        get_torchvision_models)
from torch.hub import download_url_to_file

TRUST_ENV_VAR = 'MMFASTERVIT_TRUSTED_CHECKPOINTS'

FileLike = Union[str, os.PathLike, IO[bytes]]
SafeGlobal = Union[Callable, Tuple[Callable, str]]

_SHA256_PATTERN = re.compile(r'[0-9a-fA-F]{64}')
_REFUSED_GLOBAL_PATTERNS = (
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'unsupported GLOBAL (\S+) whose module'),
)
# Pickle protocol 2 (torch.save's default) stores a method as ``getattr(owner, name)``: a
# HistoryBuffer pickles its statistics methods this way. Only these lookups are served.
_ALLOWED_ATTRIBUTES = {HistoryBuffer: frozenset({'min', 'max', 'current', 'mean'})}

_trusted_entries: List[str] = []


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs globals that could run code, and nobody said to trust it."""


class InvalidCheckpointError(RuntimeError):
    """A file that is not a readable ``torch.save`` checkpoint (another format, truncated, corrupt)."""

    def __init__(self, source: str, cause: Any):
        lines = str(cause).strip().splitlines() or [type(cause).__name__]
        # torch prefixes unpickling failures with advice about weights_only that does not apply
        reason = next((line for line in lines if 'Unpickler error' in line), lines[0])
        reason = reason[reason.find('Unpickler error'):] if 'Unpickler error' in reason else reason
        reason = reason.rstrip(': ') or 'unpickling failed'
        super().__init__(f'{source} is not a readable PyTorch checkpoint (not written by '
                         f'torch.save, truncated or corrupted): {reason}')


def _allowlisted_getattr(owner: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling: serves only ``_ALLOWED_ATTRIBUTES``."""
    if isinstance(owner, type) and name in _ALLOWED_ATTRIBUTES.get(owner, ()):
        return getattr(owner, name)
    owner_path = f'{getattr(owner, "__module__", "?")}.{getattr(owner, "__qualname__", owner)}'
    raise pickle.UnpicklingError(
        f'GLOBAL {owner_path}.{name} was not an allowed global (looked up with builtins.getattr)')


def _numpy_globals() -> List[SafeGlobal]:
    """numpy arrays, scalars and dtypes, under the module paths of both numpy 1 and numpy 2."""
    try:
        multiarray = importlib.import_module('numpy._core.multiarray')
    except ImportError:  # numpy < 1.26 has no numpy._core
        multiarray = importlib.import_module('numpy.core.multiarray')
    entries: List[SafeGlobal] = [np.ndarray, np.dtype]
    for function in (multiarray.scalar, multiarray._reconstruct):
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            entries.append((function, f'{module}.{function.__name__}'))
    # Unpickling a dtype rebuilds an instance of its DType class, which must be allowed too.
    entries.extend({type(np.dtype(code)) for code in np.typecodes['All']})
    dtypes_module = getattr(np, 'dtypes', None)  # numpy >= 1.25
    if dtypes_module is not None:
        entries.extend((cls, f'numpy.dtypes.{name}') for name, cls in vars(dtypes_module).items()
                       if isinstance(cls, type) and issubclass(cls, np.dtype))
    return entries


def _allowed_globals() -> List[SafeGlobal]:
    """The globals, beyond torch's own, that a checkpoint may use.

    Each one only rebuilds data: numpy arrays, scalars and dtypes (MMEngine's logs),
    ``argparse.Namespace`` (the ``args`` of timm training checkpoints), MMEngine's ``HistoryBuffer``
    and a ``getattr`` restricted to its statistics methods (its pickled state names them).
    """
    return [
        argparse.Namespace,
        HistoryBuffer,
        (_allowlisted_getattr, 'builtins.getattr'),
        *_numpy_globals(),
    ]


def _sha256(file: FileLike) -> str:
    digest = hashlib.sha256()
    with _rewound(file) as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _rewound(file: FileLike):
    """Yields a readable stream of the whole checkpoint, leaving a file object where it was."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, 'rb') as stream:
            yield stream
        return
    position = file.tell()
    try:
        yield file
    finally:
        file.seek(position)


def _normalize_trust_entry(entry: Union[str, os.PathLike]) -> str:
    entry = os.fspath(entry)
    if _SHA256_PATTERN.fullmatch(entry):
        return entry.lower()
    return osp.realpath(osp.expanduser(entry))


def _trust_entries() -> Set[str]:
    from_env = os.environ.get(TRUST_ENV_VAR, '').split(os.pathsep)
    return {_normalize_trust_entry(entry) for entry in from_env if entry} | set(_trusted_entries)


def _is_trusted(file: FileLike, digest: str) -> bool:
    entries = _trust_entries()
    if digest in entries:
        return True
    return isinstance(file, (str, os.PathLike)) and _normalize_trust_entry(file) in entries


def trust_checkpoint(path_or_sha256: Union[str, os.PathLike]) -> contextlib.ExitStack:
    """Trusts a checkpoint to be unpickled without restrictions: it may then run code.

    Give its path or the hex SHA-256 digest of its content. Called plainly, the trust lasts until
    the process ends; used as ``with trust_checkpoint(path): ...``, it ends with the block.
    """
    entry = _normalize_trust_entry(path_or_sha256)
    _trusted_entries.append(entry)
    withdraw = contextlib.ExitStack()
    withdraw.callback(_trusted_entries.remove, entry)
    return withdraw


def _refused_globals(file: FileLike, message: str) -> List[str]:
    """Every global the checkpoint needs beyond :func:`_allowed_globals`, as far as can be told."""
    names = set()
    for pattern in _REFUSED_GLOBAL_PATTERNS:
        # torch's message drops the ``builtins.`` of builtins
        names.update(name if '.' in name else f'builtins.{name}'
                     for name in pattern.findall(message))
    try:
        with _rewound(file) as stream:
            names.update(torch.serialization.get_unsafe_globals_in_checkpoint(stream))
    except (ValueError, RuntimeError):  # not a zip checkpoint: only torch's message tells
        pass
    return sorted(names)


def _with_safe_globals(function: Callable, *args, **kwargs) -> Any:
    already_allowed = torch.serialization.get_safe_globals()
    missing = [entry for entry in _allowed_globals() if entry not in already_allowed]
    with torch.serialization.safe_globals(missing):
        return function(*args, **kwargs)


def safe_torch_load(file: FileLike,
                    map_location: Any = None,
                    *,
                    source: Optional[str] = None) -> Any:
    """``torch.load`` that refuses to run code from the checkpoint.

    Args:
        file: Path or binary file object of a ``torch.save`` checkpoint.
        map_location: Same as for :func:`torch.load`.
        source: How error messages name the checkpoint. Defaults to ``file``'s path.

    Raises:
        UnsafeCheckpointError: The checkpoint needs globals outside :func:`_allowed_globals` and is
            not trusted (see :func:`trust_checkpoint`).
    """
    if source is None:
        source = os.fspath(file) if isinstance(file, (str, os.PathLike)) else repr(file)
    try:
        with _rewound(file) as stream:
            return _with_safe_globals(
                torch.load, stream, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
    except (RuntimeError, KeyError, EOFError, ValueError) as error:
        raise InvalidCheckpointError(source, error) from error
    digest = _sha256(file)
    if _is_trusted(file, digest):
        print_log(f'Loading trusted checkpoint {source} without restrictions', logger='current')
        with _rewound(file) as stream:
            return torch.load(stream, map_location=map_location, weights_only=False)
    try:
        refused = _with_safe_globals(_refused_globals, file, message)
    except Exception as error:  # torch cannot even scan it: not a checkpoint at all
        raise InvalidCheckpointError(source, error) from error
    if not refused:
        raise InvalidCheckpointError(source, message)
    needs = (f'unpickling it needs {", ".join(refused)}, outside the globals known to be safe '
             '(a checkpoint is a pickle, and a global may run code)')
    raise UnsafeCheckpointError(
        f'Refusing to load checkpoint {source}: {needs}. If you trust this file, allow it with '
        f'mmfastervit.checkpoint.trust_checkpoint(path) or add its path or SHA-256 digest '
        f'{digest} to the environment variable {TRUST_ENV_VAR} (separated by {os.pathsep!r}).')


def load_from_local(filename: str, map_location: Any = None) -> Any:
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location)


def download_checkpoint(url: str, model_dir: Optional[str] = None) -> str:
    """Downloads ``url`` into ``model_dir`` unless it is already there, and returns the local path.

    ``model_dir`` defaults to torch hub's checkpoint cache, which MMEngine uses as well.
    """
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached_file = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached_file):
        print_log(f'Downloading {url} to {cached_file}', logger='current')
        download_url_to_file(url, cached_file, progress=os.isatty(0))
    return cached_file


def load_from_http(filename: str, map_location: Any = None, model_dir: Optional[str] = None) -> Any:
    """Downloads once (rank 0 first, the others then find it cached) and loads the local copy."""
    rank, world_size = get_dist_info()
    if rank == 0:
        cached_file = download_checkpoint(filename, model_dir)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            cached_file = download_checkpoint(filename, model_dir)
    return safe_torch_load(cached_file, map_location)


def load_from_pavi(filename: str, map_location: Any = None) -> Any:
    try:
        from pavi import modelcloud
    except ImportError as error:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.') from error
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        downloaded_file = osp.join(tmp_dir, model.name)
        model.download(downloaded_file)
        return safe_torch_load(downloaded_file, map_location, source=filename)


def load_from_ceph(filename: str, map_location: Any = None, backend: str = 'petrel') -> Any:
    file_backend = get_file_backend(filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return safe_torch_load(buffer, map_location, source=filename)


def load_from_torchvision(filename: str, map_location: Any = None) -> Any:
    model_name = filename.split('://', 1)[1]
    return load_from_http(get_torchvision_models()[model_name], map_location)


def load_from_openmmlab(filename: str, map_location: Any = None) -> Any:
    model_name = filename.split('://', 1)[1]
    model_name = get_deprecated_model_names().get(model_name, model_name)
    model_url = get_external_models()[model_name]
    if model_url.startswith(('http://', 'https://')):
        return load_from_http(model_url, map_location)
    return load_from_local(osp.join(_get_mmengine_home(), model_url), map_location)


def load_from_mmcls(filename: str, map_location: Any = None) -> Any:
    model_url = get_mmcls_models()[filename[len('mmcls://'):]]
    return _process_mmcls_checkpoint(load_from_http(model_url, map_location))


_LOADERS: Dict[Tuple[str, ...], Callable] = {
    ('', ): load_from_local,
    ('http://', 'https://'): load_from_http,
    ('pavi://', ): load_from_pavi,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): load_from_ceph,
    ('modelzoo://', 'torchvision://'): load_from_torchvision,
    ('open-mmlab://', 'openmmlab://'): load_from_openmmlab,
    ('mmcls://', ): load_from_mmcls,
}


def install() -> None:
    """Makes every scheme of MMEngine's ``CheckpointLoader`` load through :func:`safe_torch_load`.

    Safe to call more than once. The prefixes are MMEngine 0.10's own.
    """
    for prefixes, loader in _LOADERS.items():
        CheckpointLoader.register_scheme(prefixes, loader, force=True)
