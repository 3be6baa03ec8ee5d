"""Hooks registered in MMEngine's root ``HOOKS`` registry (visible from every scope)."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ResumeRandomStateHook(Hook):
    """Makes a resumed run draw the same random numbers as an uninterrupted one.

    MMEngine restores weights, optimizer and iteration on ``resume``, and replays the data loader
    up to that iteration (so data augmentation, which draws from numpy/Python generators, stays
    in step), but not the global torch generator that training itself draws from (drop path,
    proposal and RoI sampling). This hook stores that generator's state (CPU and CUDA) in every
    checkpoint and sets it back just before the first iteration after resuming.
    """
    priority = 'VERY_LOW'

    def __init__(self):
        self._pending: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = {'cpu': torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault('meta', {})['torch_rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('meta', {}).get('torch_rng_state')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        # Only a resumed run (iteration > 0) continues a random sequence; ``load_from`` alone
        # starts training afresh.
        if self._pending is not None and runner.iter > 0:
            torch.set_rng_state(self._pending['cpu'])
            if 'cuda' in self._pending and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._pending['cuda'])
        self._pending = None
