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
short, fixed list of globals that only rebuild data (:func:`_allowed_globals`); on torch releases
before 2.6, which cannot take extra globals there, ``torch.load`` with :class:`_RestrictedUnpickler`,
which applies the same allow-list by the same rules. A file that needs anything else is refused
with :class:`UnsafeCheckpointError`, unless the user trusts it explicitly, by path or SHA-256
digest, with :func:`trust_checkpoint` or the environment variable
``MMFASTERVIT_TRUSTED_CHECKPOINTS`` (entries separated by ``os.pathsep``); a trusted file is loaded
from the very bytes that were hashed (:func:`_private_copy`).
"""
import _compat_pickle
import argparse
import collections
import contextlib
import functools
import hashlib
import importlib
import io
import os
import os.path as osp
import pickle
import pickletools
import re
import types
import zipfile
from tempfile import SpooledTemporaryFile, TemporaryDirectory
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union
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

from mmfastervit import compat

TRUST_ENV_VAR = 'MMFASTERVIT_TRUSTED_CHECKPOINTS'

FileLike = Union[str, os.PathLike, IO[bytes]]
SafeGlobal = Union[Callable, Tuple[Callable, str]]

_SHA256_PATTERN = re.compile(r'[0-9a-fA-F]{64}')
_REFUSED_GLOBAL_PATTERNS = (
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'unsupported GLOBAL (\S+) whose module'),
)
# The opcodes of pickle protocol 2 that torch.save writes, the only ones torch's weights_only
# unpickler reads.
_TORCH_SAVE_OPCODES = frozenset(
    opcode.code.encode('latin-1') for opcode in pickletools.opcodes if opcode.name in {
        'PROTO', 'STOP', 'GLOBAL', 'REDUCE', 'NEWOBJ', 'BUILD', 'BINPERSID', 'MARK', 'NONE',
        'NEWTRUE', 'NEWFALSE', 'BININT', 'BININT1', 'BININT2', 'LONG1', 'BINFLOAT', 'BINUNICODE',
        'SHORT_BINSTRING', 'EMPTY_TUPLE', 'TUPLE', 'TUPLE1', 'TUPLE2', 'TUPLE3', 'EMPTY_LIST',
        'APPEND', 'APPENDS', 'EMPTY_DICT', 'SETITEM', 'SETITEMS', 'EMPTY_SET', 'BINGET',
        'LONG_BINGET', 'BINPUT', 'LONG_BINPUT'})
_DICT_TYPES = (dict, collections.OrderedDict, collections.Counter)
# A checkpoint that must be hashed before it is loaded is copied into memory up to this size, to
# an anonymous temporary file beyond it (:func:`_private_copy`).
_COPY_IN_MEMORY_BYTES = 256 << 20
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


@functools.lru_cache(maxsize=1)
def _allowed_by_name() -> Dict[str, Any]:
    """The whole allow-list by ``'module.name'``: torch's own and :func:`_allowed_globals`."""
    allowed = compat.torch_safe_globals()
    for entry in _allowed_globals():
        value, name = entry if isinstance(entry, tuple) else (
            entry, f'{entry.__module__}.{entry.__qualname__}')
        allowed[name] = value
    return allowed


def _python3_name(module: str, name: str) -> Tuple[str, str]:
    """The Python 3 name of a global as pickle protocol 2 writes it (``__builtin__.getattr``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _OpcodeTable(dict):
    """An unpickler's opcode handlers; an opcode without one is refused."""

    def __missing__(self, opcode: int):
        raise pickle.UnpicklingError(f'Unsupported operand {opcode}')


@functools.lru_cache(maxsize=1)
def _allowed_ids() -> frozenset:
    """``id()`` of every allowed global (module-level objects, alive as long as the process)."""
    return frozenset(map(id, _allowed_by_name().values()))


def _is_allowed(value: Any) -> bool:
    return id(value) in _allowed_ids()


class _RestrictedUnpickler(pickle._Unpickler):
    """Unpickles only what torch's ``weights_only`` unpickler would with :func:`_allowed_by_name`
    allowed, by the same rules: only the opcodes of pickle protocol 2 that ``torch.save`` writes;
    globals from the allow-list only; calls (``REDUCE``) of allowed callables only; new objects
    (``NEWOBJ``) and their state (``BUILD``) for allowed classes only, so no class can be altered;
    appends to lists and item assignments to dicts only.

    For torch releases whose ``torch.load(weights_only=True)`` cannot be given extra globals
    (before 2.6): :func:`safe_torch_load` passes it there as ``torch.load``'s ``pickle_module``.
    """

    dispatch = _OpcodeTable((opcode, handler)
                            for opcode, handler in pickle._Unpickler.dispatch.items()
                            if bytes([opcode]) in _TORCH_SAVE_OPCODES)

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        allowed = _allowed_by_name()
        if f'{module}.{name}' not in allowed:
            raise pickle.UnpicklingError(f'GLOBAL {module}.{name} was not an allowed global')
        return allowed[f'{module}.{name}']

    def _refuse_unless(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise pickle.UnpicklingError(f'{what} is not allowed')

    def load_reduce(self):
        function = self.stack[-2]
        self._refuse_unless(_is_allowed(function), f'calling {function!r}')
        super().load_reduce()

    def load_newobj(self):
        cls = self.stack[-2]
        self._refuse_unless(isinstance(cls, type) and _is_allowed(cls),
                            f'creating an object of {cls!r}')
        super().load_newobj()

    def load_build(self):
        target = self.stack[-2]
        self._refuse_unless(_is_allowed(type(target)), f'setting the state of {type(target)!r}')
        super().load_build()

    def load_append(self):
        self._refuse_unless(type(self.stack[-2]) is list, f'appending to {type(self.stack[-2])!r}')
        super().load_append()

    def load_appends(self):
        target = self.metastack[-1][-1]
        self._refuse_unless(type(target) is list, f'appending to {type(target)!r}')
        super().load_appends()

    def load_setitem(self):
        target = self.stack[-3]
        self._refuse_unless(type(target) in _DICT_TYPES, f'setting items of {type(target)!r}')
        super().load_setitem()

    def load_setitems(self):
        target = self.metastack[-1][-1]
        self._refuse_unless(type(target) in _DICT_TYPES, f'setting items of {type(target)!r}')
        super().load_setitems()

    for _handler in (load_reduce, load_newobj, load_build, load_append, load_appends, load_setitem,
                     load_setitems):
        dispatch[getattr(pickle, _handler.__name__[len('load_'):].upper())[0]] = _handler
    del _handler


def _restricted_load(file: IO[bytes], **kwargs) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# What torch.load needs of its pickle_module.
_restricted_pickle = types.ModuleType('mmfastervit_restricted_pickle')
_restricted_pickle.Unpickler = _RestrictedUnpickler
_restricted_pickle.load = _restricted_load


def _load_weights_only(stream: IO[bytes], map_location: Any) -> Any:
    """``torch.load`` of only what :func:`_allowed_by_name` allows, on every supported torch."""
    if compat.HAS_SAFE_GLOBALS:
        return compat.load_with_safe_globals(stream, map_location, _allowed_globals())
    return torch.load(stream, map_location=map_location, weights_only=False,
                      pickle_module=_restricted_pickle)


@contextlib.contextmanager
def _private_copy(file: FileLike) -> Iterator[Tuple[IO[bytes], str]]:
    """A private copy of the checkpoint and the SHA-256 digest of its bytes, read in one pass.

    Trust is decided on the digest, so the trusted bytes must be the ones loaded: loading from this
    copy, never from the path again, a file replaced after it was hashed cannot be loaded as
    trusted. Up to :data:`_COPY_IN_MEMORY_BYTES` the copy is kept in memory; a larger one (a
    multi-GB training checkpoint) goes to an anonymous temporary file in the temporary directory,
    deleted when closed, so that it costs disk space there rather than memory.
    """
    digest = hashlib.sha256()
    with SpooledTemporaryFile(max_size=_COPY_IN_MEMORY_BYTES) as copy:
        with _rewound(file) as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b''):
                digest.update(chunk)
                copy.write(chunk)
        copy.seek(0)
        yield copy, digest.hexdigest()


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


def _globals_in_pickles(stream: IO[bytes]) -> Set[str]:
    """The globals named in the pickles at the start of ``stream``, read without unpickling: the
    legacy format's sequence of pickles, or the zip format's ``data.pkl``. A global pushed from
    strings (``STACK_GLOBAL``) is found when the strings are written out or memoized before it.
    Reading stops at what does not parse."""
    if zipfile.is_zipfile(stream):
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            data_pickles = [name for name in archive.namelist() if name.endswith('data.pkl')]
            if not data_pickles:
                return set()
            stream = io.BytesIO(archive.read(data_pickles[0]))
    else:
        stream.seek(0)
    names: Set[str] = set()
    try:
        while True:
            names.update(_globals_in_one_pickle(stream))
    except Exception:  # the end of the pickles, or not a pickle at all
        pass
    return names


def _globals_in_one_pickle(stream: IO[bytes]) -> Set[str]:
    names, memo, pushed = set(), {}, [None, None]  # pushed: the last two values put on the stack
    for opcode, argument, _ in pickletools.genops(stream):
        if opcode.name in ('GLOBAL', 'INST'):
            names.add('.'.join(_python3_name(*argument.split(' ', 1))))
        elif opcode.name == 'STACK_GLOBAL' and all(isinstance(part, str) for part in pushed):
            names.add('.'.join(pushed))
        elif opcode.name == 'MEMOIZE':
            memo[len(memo)] = pushed[-1]
        elif opcode.name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
            memo[argument] = pushed[-1]
        elif opcode.name in ('GET', 'BINGET', 'LONG_BINGET'):
            pushed = [pushed[-1], memo.get(argument)]
        elif opcode.stack_after:
            pushed = [pushed[-1], argument if isinstance(argument, str) else None]
        if opcode.name == 'STOP':
            return names
    raise EOFError('the stream ended inside a pickle')


def _refused_globals(stream: IO[bytes], message: str) -> List[str]:
    """Every global the checkpoint needs beyond :func:`_allowed_by_name`, as far as can be told."""
    names = set()
    for pattern in _REFUSED_GLOBAL_PATTERNS:
        # torch's message drops the ``builtins.`` of builtins
        names.update(name if '.' in name else f'builtins.{name}'
                     for name in pattern.findall(message))
    names.update(_globals_in_pickles(stream))
    return sorted(names - _allowed_by_name().keys())


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
            return _load_weights_only(stream, map_location)
    except pickle.UnpicklingError as error:
        message = str(error)
    except (RuntimeError, KeyError, EOFError, ValueError) as error:
        raise InvalidCheckpointError(source, error) from error
    with _private_copy(file) as (copy, digest):
        if _is_trusted(file, digest):
            print_log(f'Loading trusted checkpoint {source} without restrictions',
                      logger='current')
            return torch.load(copy, map_location=map_location, weights_only=False)
        refused = _refused_globals(copy, message)
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
