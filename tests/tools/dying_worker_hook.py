"""A hook that kills one worker of a distributed run, imported through ``custom_imports`` by the
distributed failure test."""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillRankHook(Hook):
    """SIGKILLs the process of ``rank`` after its first training iteration, as an out-of-memory
    killer or a lost machine would."""

    def __init__(self, rank: int):
        self.rank = rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.rank == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)
