import pytest
import torch

import mmfastervit  # noqa: F401
from mmfastervit.checkpoint.official import CheckpointMismatchError
from mmfastervit.models.fastervit import FasterViT
from tests.fixtures.official import reference


def features_before_norms(model, x):
    features = []
    hooks = [getattr(model, f'norm{i}').register_forward_pre_hook(
        lambda module, args: features.append(args[0])) for i in model.out_indices]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return features


@pytest.mark.parametrize('wrapper_key,module_prefix', [('state_dict', True), ('model', False)])
def test_official_checkpoint_loads_through_init_cfg(tmp_path, wrapper_key, module_prefix):
    """An official-format .pth.tar (Namespace args, `module.` prefix, derived buffers) loads via
    init_cfg and reproduces the official outputs."""
    case = reference.load_case('hat_layerscale_propagation')
    path = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'),
                                              wrapper_key, module_prefix)
    model = FasterViT(arch=reference.arch_of(case),
                      init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    item = case['cases'][0]
    ours = features_before_norms(model.eval(), reference.case_input(item))
    for mine, official in zip(ours, item['features']):
        assert (mine - official).abs().max() <= 1e-4 * official.abs().max()


def test_wrong_variant_checkpoint_raises_listing_shapes(tmp_path):
    case = reference.load_case('hat')
    path = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    arch = dict(reference.arch_of(case), dim=16)
    model = FasterViT(arch=arch, init_cfg=dict(type='Pretrained', checkpoint=path))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError,
                       match=r'shape mismatches: .*stages.0.blocks.0.conv1.weight: checkpoint '
                             r'\(8, 8, 3, 3\) vs model \(16, 16, 3, 3\)'):
        model.init_weights()
    for key, value in model.state_dict().items():  # nothing was half-loaded
        assert torch.equal(value, before[key]), key


def test_official_checkpoint_refused_by_a_backbone_with_other_conv_norms(tmp_path):
    """Official weights hold BatchNorm running statistics, which a GroupNorm conv stage has no
    place for: loading names them and changes nothing."""
    case = reference.load_case('hat')
    path = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    model = FasterViT(arch=reference.arch_of(case), conv_norm_cfg=dict(type='GN', num_groups=4),
                      init_cfg=dict(type='Pretrained', checkpoint=path))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError,
                       match=r'unexpected weights: .*stem\.norm1\.running_'):
        model.init_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_checkpoint_of_other_depth_lists_missing_and_unexpected(tmp_path):
    case = reference.load_case('hat')
    path = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    arch = dict(reference.arch_of(case), depths=[1, 1, 3, 1])
    model = FasterViT(arch=arch, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointMismatchError) as error:
        model.init_weights()
    message = str(error.value)
    assert 'missing weights: stages.2.blocks.2.' in message
    assert 'unexpected weights: stages.3.blocks.1.' in message


def test_detector_checkpoint_as_backbone_init_cfg_is_explained(tmp_path):
    model = FasterViT(arch=dict(depths=(1, 1, 1, 1), dim=8, in_dim=8, num_heads=(1, 1, 2, 2)))
    detector_like = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    detector_like['rpn_head.rpn_conv.weight'] = torch.zeros(1)
    path = str(tmp_path / 'detector.pth')
    torch.save({'state_dict': detector_like, 'meta': {}}, path)
    model.init_cfg = dict(type='Pretrained', checkpoint=path)
    with pytest.raises(CheckpointMismatchError, match='detector/segmentor checkpoint.*load_from'):
        model.init_weights()
    model.init_cfg = dict(type='Pretrained', checkpoint=path, prefix='backbone.')
    model.init_weights()
