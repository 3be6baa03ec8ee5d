import pytest
import torch
from mmengine.optim import build_optim_wrapper

from mmfastervit.compat import TORCH_VERSION, has_fused_optimizer
from mmfastervit.engine import FusedAdamW, FusedSGD

OPTIMIZERS = [
    ('FusedAdamW', 'AdamW', dict(lr=1e-2, betas=(0.9, 0.999), weight_decay=0.05)),
    ('FusedSGD', 'SGD', dict(lr=1e-2, momentum=0.9, weight_decay=1e-4)),
]


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))


def _train(model, optimizer, steps=5):
    torch.manual_seed(1)
    for _ in range(steps):
        loss = model(torch.randn(4, 8)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_cpu_fused_kernels_where_torch_has_them():
    for optimizer in (torch.optim.AdamW, torch.optim.SGD):
        assert has_fused_optimizer(optimizer, 'cpu') == (TORCH_VERSION >= (2, 4))
    assert not has_fused_optimizer(torch.optim.LBFGS, 'cpu')  # no fused implementation at all


@pytest.mark.parametrize('fused_type, plain_type, options', OPTIMIZERS)
def test_built_from_a_config_with_parameter_groups_it_updates_like_torch(
        fused_type, plain_type, options):
    paramwise_cfg = dict(norm_decay_mult=0.0)
    model, reference = _model(), _model()
    wrapper = build_optim_wrapper(
        model, dict(optimizer=dict(type=fused_type, **options), paramwise_cfg=paramwise_cfg))
    reference_wrapper = build_optim_wrapper(
        reference, dict(optimizer=dict(type=plain_type, **options), paramwise_cfg=paramwise_cfg))
    optimizer = wrapper.optimizer
    assert type(optimizer).__name__ == fused_type
    assert isinstance(optimizer, type(reference_wrapper.optimizer))
    assert optimizer.defaults['fused'] == (TORCH_VERSION >= (2, 4))
    assert [group['weight_decay'] for group in optimizer.param_groups] == [
        group['weight_decay'] for group in reference_wrapper.optimizer.param_groups]

    _train(model, optimizer)
    _train(reference, reference_wrapper.optimizer)
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    # Checkpoints move between the two.
    state = optimizer.state_dict()
    reference_wrapper.optimizer.load_state_dict(state)
    torch.testing.assert_close(reference_wrapper.optimizer.state_dict()['state'], state['state'])


@pytest.mark.parametrize('optimizer', [FusedAdamW, FusedSGD])
def test_explicit_choice_is_kept_and_no_parameters_is_refused(optimizer):
    assert optimizer(_model().parameters(), lr=0.1, fused=False).defaults['fused'] is False
    with pytest.raises(ValueError, match='no parameters'):
        optimizer([], lr=0.1)
