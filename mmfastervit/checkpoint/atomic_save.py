"""Checkpoints written so that a process dying mid-write never leaves a broken file behind.

MMEngine 0.10.7 writes a checkpoint straight to its final path: a job killed while saving leaves a
truncated file there (and overwrites a good one of the same name). :func:`install` makes the
Runner write local checkpoints to a temporary file in the same directory, flush it to disk, rename
it over the final path in one atomic step, then flush the directory so that the rename survives a
power loss too. Remote paths are left to their backends.

The temporary file gets the permissions ``torch.save`` would give (0666 less the umask), so that a
checkpoint is as readable as any other file its owner writes. It is named
``.<checkpoint name>.<random hex>.mmfastervit-tmp`` and its writer holds an exclusive ``flock`` on
it until the rename. A temporary of that name that nobody holds and that has not been written to
for :data:`STALE_AFTER_SECONDS` was left by a process killed while saving: the next save into its
directory removes it, and so does ``tools/train.py`` when it resumes from a checkpoint there
(:func:`remove_stale_temporaries`).
"""
import errno
import fcntl
import os
import os.path as osp
import secrets
import time
from typing import List

import torch
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner import runner as mm_runner

TEMPORARY_SUFFIX = '.mmfastervit-tmp'
# A writer modifies its temporary continuously until it renames it; the wait also covers the
# instant between creating the file and locking it, and filesystems whose locks are not seen from
# other machines.
STALE_AFTER_SECONDS = 600

_mmengine_save_checkpoint = mm_checkpoint.save_checkpoint


def _is_local(path: str) -> bool:
    return '://' not in path


def is_temporary(name: str) -> bool:
    """Whether a file name is that of a temporary written by :func:`atomic_save_checkpoint`."""
    return name.startswith('.') and name.endswith(TEMPORARY_SUFFIX)


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False if another process holds
    one or the filesystem has no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale_temporaries(directory: str) -> List[str]:
    """Remove the temporaries of checkpoint saves that died in ``directory``; their paths.

    A temporary is stale when no process holds its lock and it has not been modified for
    :data:`STALE_AFTER_SECONDS`. Where the filesystem has no locks nothing is removed, as a live
    writer cannot be told from a dead one there.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    removed = []
    for name in filter(is_temporary, names):
        path = osp.join(directory, name)
        try:
            # Writable: an exclusive lock over NFS needs a file opened for writing.
            fd = os.open(path, os.O_RDWR)
        except (FileNotFoundError, PermissionError):  # renamed meanwhile, or another user's
            continue
        try:
            if time.time() - os.fstat(fd).st_mtime < STALE_AFTER_SECONDS or not _try_lock(fd):
                continue
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
            removed.append(path)
        finally:
            os.close(fd)
    for path in removed:
        print_log(f'Removed {path}, left by a checkpoint save that was interrupted',
                  logger='current')
    return removed


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno != errno.EINVAL:  # EINVAL: this filesystem cannot sync a directory
            raise
    finally:
        os.close(fd)


def atomic_save_checkpoint(checkpoint: dict, filename: str, file_client_args=None,
                           backend_args=None) -> None:
    """``mmengine.runner.save_checkpoint`` with an atomic replace for local files (see the module
    documentation); stale temporaries in the directory are removed first."""
    if not _is_local(filename) or file_client_args is not None or backend_args:
        return _mmengine_save_checkpoint(checkpoint, filename, file_client_args, backend_args)
    directory = osp.dirname(osp.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(directory)
    tmp_path = osp.join(directory,
                        f'.{osp.basename(filename)}.{secrets.token_hex(8)}{TEMPORARY_SUFFIX}')
    # Mode 0666 as open() uses: the kernel takes the umask off, as for a plain torch.save.
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _try_lock(fd)  # without locks on this filesystem the file is just never removed by others
        with os.fdopen(fd, 'wb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp_path, filename)  # still locked: never taken for a dead writer's
        _fsync_directory(directory)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


def install() -> None:
    """Route the Runner's checkpoint saving through :func:`atomic_save_checkpoint` (idempotent)."""
    mm_runner.save_checkpoint = atomic_save_checkpoint
    mm_checkpoint.save_checkpoint = atomic_save_checkpoint
