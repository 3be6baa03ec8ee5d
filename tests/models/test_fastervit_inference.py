"""Inference always computes with the weights the model holds at the time of the call, whatever
changed them: the ways mmengine and mmdet change weights (EMA swaps and mean-teacher updates through
``.data``, in-place edits of BatchNorm statistics), serving patterns (a model built under
``torch.inference_mode``, several threads) and the kernels that derive values from weights."""
import threading

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmfastervit  # noqa: F401
from mmfastervit.models.fastervit import FasterViT
from mmfastervit.models.kernels import TokenLinear, conv_norm, linear_as_conv
from tests.conftest import TINY_ARCH_LAYER_SCALE_PROPAGATION

# Every branch: conv stages with BatchNorm, carrier tokens, layer scale, propagation.
ARCH = TINY_ARCH_LAYER_SCALE_PROPAGATION
SIZE = (1, 3, 224, 288)  # 3 x 4 windows in the HAT stage


def randomised_model(seed: int) -> FasterViT:
    """A model in eval mode whose every parameter and BatchNorm statistic is random."""
    torch.manual_seed(seed)
    model = FasterViT(arch=ARCH)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.2)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def fresh_copy(model: FasterViT) -> FasterViT:
    """A newly built model holding ``model``'s weights, never run before."""
    fresh = FasterViT(arch=ARCH).eval()
    fresh.load_state_dict(model.state_dict())
    return fresh


def infer(model, x):
    with torch.no_grad():
        return model(x)


def assert_same(outputs, expected):
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_eval_outputs_follow_weights_copied_through_data():
    """mmengine's EMAHook swaps weights with ``p.data.copy_()``, which bumps no version counter."""
    model, other = randomised_model(0), randomised_model(1)
    x = torch.randn(*SIZE)
    before = infer(model, x)
    for target, source in zip((*model.parameters(), *model.buffers()),
                              (*other.parameters(), *other.buffers())):
        target.data.copy_(source.data)
    after = infer(model, x)
    assert_same(after, infer(fresh_copy(other), x))
    assert not torch.allclose(after[2], before[2])


def test_mean_teacher_updates_reach_the_teacher():
    """mmdet's MeanTeacherHook moves the teacher towards the student through ``.data`` while the
    semi-supervised detector runs the teacher in eval mode under no_grad."""
    from mmdet.engine.hooks import MeanTeacherHook
    pair = nn.Module()
    pair.teacher, pair.student = randomised_model(0), randomised_model(1)
    x = torch.randn(*SIZE)
    hook = MeanTeacherHook(momentum=0.5)
    for _ in range(3):
        pair.teacher.eval()
        pseudo_labels = infer(pair.teacher, x)
        assert_same(pseudo_labels, infer(fresh_copy(pair.teacher), x))
        hook.momentum_update(pair, 0.5)
        with torch.no_grad():
            for param in pair.student.parameters():
                param.add_(0.05)


@pytest.mark.parametrize('through_data', [False, True])
def test_eval_outputs_follow_batchnorm_statistics_edits(through_data):
    model = randomised_model(0)
    x = torch.randn(*SIZE)
    before = infer(model, x)
    norms = [model.stem.norm1, model.stages[0].blocks[0].norm2, model.stages[1].blocks[0].norm1]
    with torch.no_grad():
        for norm in norms:
            stats = (norm.running_mean.data, norm.running_var.data) if through_data else (
                norm.running_mean, norm.running_var)
            stats[0].add_(0.3)
            stats[1].mul_(1.5)
    after = infer(model, x)
    assert not torch.allclose(after[0], before[0])
    assert_same(after, infer(fresh_copy(model), x))


def test_ema_hook_validation_uses_the_ema_weights(tmp_path):
    """Train with mmengine's EMAHook, validating after every iteration: each validation gives what
    a fresh model loaded with the EMA weights gives, and after training the model gives what its
    own (swapped back) weights give."""
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    images = torch.randn(2, 3, 96, 160)
    validations = []

    class Backbone(BaseModel):

        def __init__(self):
            super().__init__()
            self.backbone = randomised_model(0)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            features = self.backbone(inputs)
            if mode == 'loss':
                return dict(loss=sum(f.square().mean() for f in features))
            return [features[2]]

    class RecordValidation(BaseMetric):

        def process(self, data_batch, data_samples):
            # EMAHook has swapped the averaged weights into the model and the training weights
            # into its EMA copy (both through .data)
            held = runner.model.backbone.state_dict()
            training = ema_hook.ema_model.module.backbone.state_dict()
            averaged = not torch.equal(held['stem.conv1.weight'], training['stem.conv1.weight'])
            validations.append((data_samples[0].clone(), {k: v.clone() for k, v in held.items()},
                                averaged))

        def compute_metrics(self, results):
            return dict(recorded=1.0)

    loader = dict(dataset=[dict(inputs=image) for image in images], batch_size=2,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'))
    runner = Runner(
        model=Backbone(), work_dir=str(tmp_path), train_dataloader=loader,
        val_dataloader=loader, val_evaluator=[RecordValidation()], val_cfg=dict(),
        train_cfg=dict(by_epoch=False, max_iters=3, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
        custom_hooks=[dict(type='EMAHook', momentum=0.5)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=100)),
        default_scope='mmengine')
    ema_hook = next(hook for hook in runner.hooks if type(hook).__name__ == 'EMAHook')
    runner.train()

    assert len(validations) == 3
    assert validations[-1][2], 'the last validation did not run on averaged weights'
    for features, weights, _ in validations:
        reference = FasterViT(arch=ARCH).eval()
        reference.load_state_dict(weights)
        torch.testing.assert_close(features, infer(reference, images)[2], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(validations[0][0], validations[-1][0])
    trained = runner.model.backbone.eval()
    assert_same(infer(trained, images), infer(fresh_copy(trained), images))


def test_model_built_under_inference_mode_runs():
    """A serving pattern: parameters and buffers created under inference_mode are inference
    tensors, which have no version counter."""
    with torch.inference_mode():
        model = randomised_model(0)
        x = torch.randn(*SIZE)
        outputs = model(x)
    assert_same(outputs, infer(fresh_copy(model), x))


def test_threads_sharing_one_model_get_their_own_results():
    model = randomised_model(0)
    inputs = [torch.randn(1, 3, 224, 288), torch.randn(1, 3, 160, 352)]
    expected = [infer(model, x) for x in inputs]
    results, errors = {}, []

    def run(index):
        try:
            for _ in range(3):
                results[index] = infer(model, inputs[index])
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, )) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, outputs in results.items():
        assert_same(outputs, expected[index])


def test_no_tensor_outlives_a_forward():
    """Nothing derived from weights or input sizes (folded convolutions, positional terms,
    attention biases) is kept on the modules between calls."""
    model = randomised_model(0)
    infer(model, torch.randn(1, 3, 448, 448))
    owned = {id(t) for t in (*model.parameters(), *model.buffers())}

    def kept_tensors(value, depth=0):
        if isinstance(value, torch.Tensor):
            return [] if id(value) in owned else [value]
        if depth > 3 or isinstance(value, (nn.Module, str, bytes, type)):
            return []
        if isinstance(value, dict):
            value = list(value.values())
        elif hasattr(value, '__dict__'):
            value = list(vars(value).values())
        if isinstance(value, (list, tuple)):
            return [t for item in value for t in kept_tensors(item, depth + 1)]
        return []

    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr not in ('_parameters', '_buffers', '_modules'):
                assert not kept_tensors(value), f'{name}.{attr} keeps a tensor'


def test_folded_conv_norm_equals_the_layers_and_trains_through():
    """With the norm in eval mode (inference, frozen stages, ``norm_eval``) the conv and norm run as
    one folded convolution: same values and same gradients as the two layers."""
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2)
        norm.weight.normal_()
    norm.eval()
    scale = torch.rand(16, requires_grad=True)
    x = torch.randn(2, 8, 20, 24, requires_grad=True)
    folded = conv_norm(conv, norm, x, scale)
    layers = norm(conv(x)) * scale.view(1, -1, 1, 1)
    torch.testing.assert_close(folded, layers, rtol=1e-5, atol=1e-5)
    tensors = (x, scale, conv.weight, conv.bias, norm.weight, norm.bias)
    grad_out = torch.randn_like(layers)
    for a, b in zip(torch.autograd.grad(folded, tensors, grad_out),
                    torch.autograd.grad(layers, tensors, grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_token_linear_conv_kernel_equals_linear_forward_and_backward():
    torch.manual_seed(0)
    linear = TokenLinear(24, 40)
    x = torch.randn(3, 49, 24, requires_grad=True)
    as_conv = linear_as_conv(x, linear.weight, linear.bias)
    reference = F.linear(x, linear.weight, linear.bias)
    torch.testing.assert_close(as_conv, reference, rtol=1e-5, atol=1e-5)
    tensors = (x, linear.weight, linear.bias)
    grad_out = torch.randn_like(reference)
    for a, b in zip(torch.autograd.grad(as_conv, tensors, grad_out),
                    torch.autograd.grad(reference, tensors, grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fsdp2_sharded_model_gives_the_unsharded_results(tmp_path):
    """FSDP2 (``fully_shard``) keeps the parameters as DTensors between calls."""
    fsdp = pytest.importorskip('torch.distributed.fsdp', reason='fully_shard needs torch >= 2.6')
    if not hasattr(fsdp, 'fully_shard'):
        pytest.skip('fully_shard needs torch >= 2.6')
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor
    model = randomised_model(0)
    x = torch.randn(*SIZE)
    expected = infer(model, x)
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/rendezvous', rank=0,
                            world_size=1)
    try:
        fsdp.fully_shard(model, mesh=init_device_mesh('cpu', (1, )))
        assert isinstance(model.stem.conv1.weight, DTensor)
        assert_same(infer(model, x), expected)
    finally:
        dist.destroy_process_group()
