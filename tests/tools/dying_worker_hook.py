"""A hook that kills processes of a training run, imported through ``custom_imports`` by the
distributed end-to-end tests."""
import os
import signal
from typing import Sequence

from mmengine.dist import barrier
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillRanksHook(Hook):
    """SIGKILLs the processes of ``ranks`` once iteration ``after_iter`` is done, as an
    out-of-memory killer, a lost machine or a preempted job would.

    It comes after the checkpoint hook, and every process waits for the others first: a
    checkpoint of that iteration is completely written before anything is killed.
    """
    priority = 'LOWEST'

    def __init__(self, ranks: Sequence[int], after_iter: int = 1):
        self.ranks = tuple(ranks)
        self.after_iter = after_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.after_iter:
            barrier()
            if runner.rank in self.ranks:
                os.kill(os.getpid(), signal.SIGKILL)
