"""Hooks registered in MMEngine's root ``HOOKS`` registry (visible from every scope)."""
from typing import List, Optional

import torch
from mmengine.dist import all_gather_object
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _torch_random_state() -> dict:
    state = {'cpu': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


@HOOKS.register_module()
class ResumeRandomStateHook(Hook):
    """Makes a resumed run draw the same random numbers as an uninterrupted one, on every process.

    MMEngine restores weights, optimizer and iteration on ``resume``, and replays the data loader
    up to that iteration (so data augmentation, which draws from numpy/Python generators, stays
    in step), but not the global torch generator that training itself draws from (drop path,
    proposal and RoI sampling). This hook stores the state of that generator (CPU and CUDA) of
    every process in each checkpoint, as a list indexed by rank, and sets each process's own back
    at the start of the first iteration after resuming.

    The run that saved the checkpoint sets its generators back to the saved states at that same
    point: between a checkpoint and the next iteration, validation and a data loader starting an
    epoch draw from the generator too, and a resumed run would not make those draws.

    Only the main process writes checkpoints, and it calls ``before_save_checkpoint`` alone, so a
    distributed run gathers the states where every process takes part: in
    ``Runner.save_checkpoint``, which the checkpoint hook calls on every process. A run resumed
    with another number of processes than the checkpoint's keeps its freshly seeded generators
    and says so in the log: its random sequence cannot continue the interrupted one.
    """
    priority = 'VERY_LOW'

    def __init__(self):
        # The states of every process that the checkpoints saved since the last iteration hold
        # (taken at the first of them), and those of a loaded checkpoint.
        self._saved: Optional[List[dict]] = None
        self._loaded: Optional[List[dict]] = None

    def _states_to_save(self, runner) -> List[dict]:
        if self._saved is None:
            state = _torch_random_state()
            self._saved = all_gather_object(state) if runner.world_size > 1 else [state]
        return self._saved

    def before_train(self, runner) -> None:
        if runner.world_size == 1:
            return
        save_checkpoint = runner.save_checkpoint

        def save_checkpoint_after_gathering(*args, **kwargs):
            self._states_to_save(runner)
            return save_checkpoint(*args, **kwargs)

        runner.save_checkpoint = save_checkpoint_after_gathering

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner.world_size > 1 and self._saved is None:
            return  # saved by a call on the main process alone: nothing was gathered
        checkpoint.setdefault('meta', {})['torch_rng_state'] = self._states_to_save(runner)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('meta', {}).get('torch_rng_state')
        # Checkpoints of earlier versions hold the main process's state alone.
        self._loaded = [states] if isinstance(states, dict) else states

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        # Only a resumed run (iteration > 0) continues a random sequence; ``load_from`` alone
        # starts training afresh.
        states = self._saved
        if self._loaded is not None and runner.iter > 0:
            states = self._loaded
            if len(states) == runner.world_size:
                runner.logger.info(f'Restored the torch random state of {len(states)} process(es).')
            else:
                runner.logger.warning(
                    f'The checkpoint holds the torch random state of {len(states)} process(es) '
                    f'and this run has {runner.world_size}: the random sequence starts afresh '
                    'from the seed, so this run is not an exact continuation of the interrupted '
                    'one.')
                states = None
        self._saved = self._loaded = None
        if states is not None:
            state = states[runner.rank]
            torch.set_rng_state(state['cpu'])
            if 'cuda' in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state['cuda'])
