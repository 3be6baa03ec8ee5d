"""Checkpoint handling for MMEngine: loading that never lets a checkpoint file run code, saving
that never leaves a truncated file, and official FasterViT checkpoints (:mod:`.official`).

Importing this package makes every MMEngine checkpoint loader go through :func:`safe_torch_load`
and the Runner save checkpoints atomically.
"""
from . import atomic_save
from .safe_load import (TRUST_ENV_VAR, InvalidCheckpointError, UnsafeCheckpointError, install,
                        safe_torch_load, trust_checkpoint)

install()
atomic_save.install()

__all__ = [
    'TRUST_ENV_VAR', 'InvalidCheckpointError', 'UnsafeCheckpointError', 'install',
    'safe_torch_load', 'trust_checkpoint'
]
