"""Checkpoints written so that a process dying mid-write never leaves a broken file behind.

MMEngine 0.10.7 writes a checkpoint straight to its final path: a job killed while saving leaves a
truncated file there (and overwrites a good one of the same name). :func:`install` makes the
Runner write local checkpoints to a temporary file in the same directory, flush it to disk, then
rename it over the final path in one atomic step. Remote paths are left to their backends.
"""
import os
import os.path as osp
import tempfile

import torch
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner import runner as mm_runner

_mmengine_save_checkpoint = mm_checkpoint.save_checkpoint


def _is_local(path: str) -> bool:
    return '://' not in path


def atomic_save_checkpoint(checkpoint: dict, filename: str, file_client_args=None,
                           backend_args=None) -> None:
    """``mmengine.runner.save_checkpoint`` with an atomic replace for local files."""
    if not _is_local(filename) or file_client_args is not None or backend_args:
        return _mmengine_save_checkpoint(checkpoint, filename, file_client_args, backend_args)
    directory = osp.dirname(osp.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{osp.basename(filename)}.', suffix='.tmp',
                                    dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, filename)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


def install() -> None:
    """Route the Runner's checkpoint saving through :func:`atomic_save_checkpoint` (idempotent)."""
    mm_runner.save_checkpoint = atomic_save_checkpoint
    mm_checkpoint.save_checkpoint = atomic_save_checkpoint

