"""FasterViT backbones for MMDetection and MMSegmentation.

Importing the package registers everything the configs need in MMEngine's root registries (so the
``mmdet`` and ``mmseg`` scopes both find them) and makes MMEngine's checkpoint loading safe on
torch >= 2.6 (see :mod:`mmfastervit.checkpoint.safe_load`).
"""
from . import checkpoint, datasets, engine, evaluation, models  # noqa: F401  (registration)

__version__ = '0.1.0'
