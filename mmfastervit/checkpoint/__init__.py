"""Checkpoint loading for MMEngine that never lets a checkpoint file run code.

Importing this package makes every MMEngine checkpoint loader go through :func:`safe_torch_load`.
"""
from .safe_load import (TRUST_ENV_VAR, InvalidCheckpointError, UnsafeCheckpointError, install,
                        safe_torch_load, trust_checkpoint)

install()

__all__ = [
    'TRUST_ENV_VAR', 'InvalidCheckpointError', 'UnsafeCheckpointError', 'install', 'safe_torch_load', 'trust_checkpoint'
]
