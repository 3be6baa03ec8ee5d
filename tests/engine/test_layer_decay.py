import pytest
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

from mmfastervit.engine import FasterViTLayerDecayOptimizerConstructor, get_layer_id
from mmfastervit.models.fastervit import FasterViT
from tests.conftest import TINY_ARCH_EVERY_PARAMETER_KIND as TINY_ARCH

BASE_LR = 1e-3
BASE_WD = 0.05
TINY_DEPTHS = TINY_ARCH['depths']
NO_DECAY_CFG = dict(
    norm_decay_mult=0., custom_keys={
        'pos_mlp': dict(decay_mult=0.),
        'gamma': dict(decay_mult=0.)
    })


class Detector(nn.Module):
    """Stands in for a detector: a backbone plus a head outside it."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(16, 4, 1)


def build(model: nn.Module, **paramwise_cfg):
    return build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD),
            constructor='FasterViTLayerDecayOptimizerConstructor',
            paramwise_cfg=paramwise_cfg))


def groups_by_name(model: nn.Module, optim_wrapper) -> dict:
    names = {id(param): name for name, param in model.named_parameters()}
    groups = {}
    for group in optim_wrapper.optimizer.param_groups:
        (param, ) = group['params']
        groups[names[id(param)]] = group
    return groups


@pytest.fixture(scope='module')
def model():
    return Detector(FasterViT(arch=TINY_ARCH))


@pytest.mark.parametrize('name, layer_id', [
    ('stem.conv1.weight', 0),
    ('stem.norm2.bias', 0),
    ('stages.0.blocks.0.conv1.weight', 1),
    ('stages.0.blocks.1.gamma', 2),
    ('stages.0.downsample.conv.weight', 3),  # first block of stage 1
    ('stages.1.blocks.0.conv2.bias', 3),
    ('stages.1.blocks.2.norm1.weight', 5),
    ('stages.1.downsample.norm.weight', 6),
    ('stages.2.carrier_init.conv.weight', 6),  # first block of its stage
    ('stages.2.blocks.0.attn.qkv.weight', 6),
    ('stages.2.blocks.5.carrier.attn.rel_pos_mlp.fc2.weight', 11),
    ('stages.3.blocks.4.mlp.fc2.bias', 16),
    ('norm0.weight', 2),  # last block of stage 0
    ('norm2.bias', 11),
    ('norm3.weight', 16),
])
def test_layer_wise_ids_of_fastervit_0(name, layer_id):
    assert get_layer_id(name, (2, 3, 6, 5), 'layer_wise') == layer_id


@pytest.mark.parametrize('name, layer_id', [
    ('stem.conv2.weight', 0),
    ('stages.0.blocks.1.conv1.weight', 1),
    ('norm0.weight', 1),
    ('stages.0.downsample.conv.weight', 2),
    ('stages.2.carrier_init.conv.bias', 3),
    ('stages.2.downsample.conv.weight', 4),
    ('stages.3.blocks.0.pos_mlp.fc1.weight', 4),
])
def test_stage_wise_ids(name, layer_id):
    assert get_layer_id(name, (2, 3, 6, 5), 'stage_wise') == layer_id


def test_unknown_name_and_decay_type_raise():
    with pytest.raises(ValueError, match='not a FasterViT parameter'):
        get_layer_id('head.weight', (2, 3, 6, 5))
    with pytest.raises(ValueError, match='decay_type'):
        get_layer_id('stem.conv1.weight', (2, 3, 6, 5), 'block_wise')


@pytest.mark.parametrize('arch', ['0', '3', '4-21k-224'])
def test_every_backbone_parameter_has_an_id_within_range(arch):
    backbone = FasterViT(arch=arch)
    depths = [len(stage.blocks) for stage in backbone.stages]
    ids = [get_layer_id(name, depths) for name, _ in backbone.named_parameters()]
    assert min(ids) == 0
    assert max(ids) == sum(depths)
    # Every block is its own layer.
    assert set(ids) == set(range(sum(depths) + 1))


def test_layer_wise_lr_and_no_decay(model):
    rate = 0.8
    groups = groups_by_name(model, build(model, decay_rate=rate, **NO_DECAY_CFG))
    num_layers = sum(TINY_DEPTHS)  # 8 blocks; the head is layer 9
    assert len(groups) == len(list(model.parameters()))

    expected_lr = {
        'head.weight': BASE_LR,
        'backbone.stem.conv1.weight': BASE_LR * rate**9,
        'backbone.stages.0.blocks.0.conv1.weight': BASE_LR * rate**8,
        'backbone.stages.0.downsample.conv.weight': BASE_LR * rate**7,
        'backbone.stages.2.carrier_init.conv.weight': BASE_LR * rate**(9 - 4),
        'backbone.stages.2.blocks.2.attn.qkv.weight': BASE_LR * rate**(9 - 6),
        'backbone.stages.3.blocks.1.mlp.fc1.weight': BASE_LR * rate**(9 - num_layers),
        'backbone.norm3.weight': BASE_LR * rate,
    }
    for name, lr in expected_lr.items():
        assert groups[name]['lr'] == pytest.approx(lr), name

    no_decay = [
        'backbone.stem.norm1.weight',  # BatchNorm
        'backbone.stages.2.blocks.0.norm1.bias',  # LayerNorm
        'backbone.stages.1.downsample.norm.weight',  # channel LayerNorm
        'backbone.norm2.weight',
        'backbone.stages.2.blocks.1.pos_mlp.fc1.weight',
        'backbone.stages.3.blocks.0.attn.rel_pos_mlp.fc2.weight',
        'backbone.stages.2.blocks.0.carrier.pos_mlp.fc2.weight',
        'backbone.stages.2.blocks.0.gamma1',
        'backbone.stages.3.blocks.1.gamma2',
    ]
    for name in no_decay:
        assert groups[name]['weight_decay'] == 0, name
    for name in ('head.weight', 'backbone.stem.conv1.weight',
                 'backbone.stages.2.blocks.0.attn.qkv.weight',
                 'backbone.stages.3.blocks.1.mlp.fc2.bias'):
        assert groups[name]['weight_decay'] == pytest.approx(BASE_WD), name


def test_stage_wise_lr(model):
    rate = 0.5
    groups = groups_by_name(model, build(model, decay_rate=rate, decay_type='stage_wise'))
    expected_lr = {
        'head.weight': BASE_LR,
        'backbone.stem.conv2.weight': BASE_LR * rate**5,
        'backbone.stages.0.blocks.0.conv1.bias': BASE_LR * rate**4,
        'backbone.stages.2.blocks.2.mlp.fc1.weight': BASE_LR * rate**2,
        'backbone.stages.3.blocks.0.attn.proj.weight': BASE_LR * rate,
    }
    for name, lr in expected_lr.items():
        assert groups[name]['lr'] == pytest.approx(lr), name


def test_larger_num_layers_scales_the_whole_backbone_further(model):
    rate = 0.9
    groups = groups_by_name(model, build(model, decay_rate=rate, num_layers=10))
    assert groups['head.weight']['lr'] == pytest.approx(BASE_LR)
    assert groups['backbone.stem.conv1.weight']['lr'] == pytest.approx(BASE_LR * rate**11)
    assert groups['backbone.norm3.bias']['lr'] == pytest.approx(BASE_LR * rate**3)


def test_lr_mult_of_custom_keys_is_kept(model):
    rate = 0.5
    groups = groups_by_name(
        model, build(model, decay_rate=rate, custom_keys={'stem': dict(lr_mult=0.1)}))
    assert groups['backbone.stem.conv1.weight']['lr'] == pytest.approx(BASE_LR * 0.1 * rate**9)


def test_frozen_parameters_are_left_out():
    frozen = Detector(FasterViT(arch=TINY_ARCH, frozen_stages=1))
    groups = groups_by_name(frozen, build(frozen, decay_rate=0.9))
    frozen_prefixes = ('backbone.stem.', 'backbone.stages.0.blocks.')
    assert not any(name.startswith(frozen_prefixes) for name in groups)
    assert 'backbone.stages.1.blocks.0.conv1.weight' in groups


def test_rejects_other_backbones():
    model = Detector(nn.Conv2d(3, 16, 3))
    with pytest.raises(TypeError, match='FasterViT'):
        build(model, decay_rate=0.9)
    with pytest.raises(TypeError, match='FasterViT'):
        build(nn.Linear(2, 2), decay_rate=0.9)


def test_rejects_bad_settings(model):
    with pytest.raises(ValueError, match='decay_rate'):
        build(model, decay_type='layer_wise')
    with pytest.raises(ValueError, match='decay_type'):
        build(model, decay_rate=0.9, decay_type='block_wise')
    with pytest.raises(ValueError, match='num_layers'):
        build(model, decay_rate=0.9, num_layers=sum(TINY_DEPTHS) - 1)
    with pytest.raises(ValueError, match='num_layers'):
        build(model, decay_rate=0.9, decay_type='stage_wise', num_layers=3)


def test_is_registered_in_the_root_registry():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
    assert OPTIM_WRAPPER_CONSTRUCTORS.get(
        'FasterViTLayerDecayOptimizerConstructor') is FasterViTLayerDecayOptimizerConstructor
