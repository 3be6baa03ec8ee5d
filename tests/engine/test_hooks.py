"""ResumeRandomStateHook in one process, with a stand-in for the Runner (its distributed path runs
for real in tests/tools/test_det_e2e.py)."""
from types import SimpleNamespace

import torch

from mmfastervit.engine import ResumeRandomStateHook


def runner_at(iteration: int, rank: int = 0, world_size: int = 1) -> SimpleNamespace:
    """The runner's attributes that the hook reads; its log messages go to ``logged``."""
    logged = []
    return SimpleNamespace(iter=iteration, rank=rank, world_size=world_size, logged=logged,
                           logger=SimpleNamespace(info=logged.append, warning=logged.append))


def save_and_resume(checkpoint: dict, resumed_runner) -> None:
    """What the Runner does with a checkpoint's hook calls when it resumes from it, up to the
    first iteration."""
    hook = ResumeRandomStateHook()
    hook.after_load_checkpoint(resumed_runner, checkpoint)
    hook.before_train_iter(resumed_runner, batch_idx=0)


def test_a_resumed_run_continues_the_random_sequence():
    torch.manual_seed(0)
    checkpoint = {}
    ResumeRandomStateHook().before_save_checkpoint(runner_at(4), checkpoint)
    assert len(checkpoint['meta']['torch_rng_state']) == 1  # one process
    uninterrupted = torch.rand(5)

    torch.manual_seed(1)  # the resumed run is seeded again
    save_and_resume(checkpoint, runner_at(4))
    assert torch.equal(torch.rand(5), uninterrupted)


def test_draws_between_a_checkpoint_and_the_next_iteration_are_left_out_of_the_sequence():
    """Validation, or a data loader starting an epoch, draws after the checkpoint is saved; a
    run resumed from it makes no such draws."""
    torch.manual_seed(0)
    hook, runner = ResumeRandomStateHook(), runner_at(4)
    checkpoint, best_checkpoint = {}, {}
    hook.before_save_checkpoint(runner, checkpoint)
    torch.rand(3)  # validation
    hook.before_save_checkpoint(runner, best_checkpoint)  # the best checkpoint, after validation
    torch.rand(3)  # the data loader's seed for a new epoch
    hook.before_train_iter(runner, batch_idx=0)
    uninterrupted = torch.rand(5)

    for saved in (checkpoint, best_checkpoint):
        torch.manual_seed(1)
        save_and_resume(saved, runner_at(4))
        assert torch.equal(torch.rand(5), uninterrupted)


def test_load_from_starts_afresh():
    torch.manual_seed(0)
    checkpoint = {}
    ResumeRandomStateHook().before_save_checkpoint(runner_at(4), checkpoint)
    torch.manual_seed(1)
    fresh = torch.get_rng_state()
    save_and_resume(checkpoint, runner_at(0))  # load_from: training starts at iteration 0
    assert torch.equal(torch.get_rng_state(), fresh)


def test_each_process_takes_its_own_state():
    states = []
    for seed in (10, 11):
        torch.manual_seed(seed)
        states.append({'cpu': torch.get_rng_state()})
    torch.manual_seed(11)
    expected = torch.rand(5)

    torch.manual_seed(0)
    save_and_resume({'meta': {'torch_rng_state': states}}, runner_at(4, rank=1, world_size=2))
    assert torch.equal(torch.rand(5), expected)


def test_another_number_of_processes_is_logged_and_starts_afresh():
    states = [{'cpu': torch.get_rng_state()} for _ in range(4)]
    torch.manual_seed(1)
    fresh = torch.get_rng_state()
    runner = runner_at(4, rank=1, world_size=2)
    save_and_resume({'meta': {'torch_rng_state': states}}, runner)
    assert torch.equal(torch.get_rng_state(), fresh)
    (message, ) = runner.logged
    assert message.startswith('The checkpoint holds the torch random state of 4 process(es) and '
                              'this run has 2: the random sequence starts afresh')


def test_checkpoints_with_the_state_of_one_process_as_a_dict_still_resume():
    torch.manual_seed(0)
    state = {'cpu': torch.get_rng_state()}
    expected = torch.rand(5)
    torch.manual_seed(1)
    save_and_resume({'meta': {'torch_rng_state': state}}, runner_at(4))
    assert torch.equal(torch.rand(5), expected)
