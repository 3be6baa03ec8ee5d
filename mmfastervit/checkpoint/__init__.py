"""Checkpoint handling for MMEngine: loading that never lets a checkpoint file run code, saving
that never leaves a truncated file, and official FasterViT checkpoints (:mod:`.official`, and the
DINO detector: :mod:`.official_dino`).

Importing this package makes every MMEngine checkpoint loader go through :func:`safe_torch_load`
and the Runner save checkpoints atomically, and registers ``OfficialDINOCheckpointHook``.
"""
from . import atomic_save, official_dino  # noqa: F401  (official_dino registers its hook)
from .safe_load import (TRUST_ENV_VAR, InvalidCheckpointError, UnsafeCheckpointError, install,
                        safe_torch_load, trust_checkpoint)

install()
atomic_save.install()

__all__ = [
    'TRUST_ENV_VAR', 'InvalidCheckpointError', 'UnsafeCheckpointError', 'install',
    'safe_torch_load', 'trust_checkpoint'
]
