import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

import mmfastervit  # noqa: F401
from mmfastervit.checkpoint.official import (CheckpointMismatchError, check_and_load,
                                             convert_official_state_dict)
from mmfastervit.models.fastervit import ARCH_SETTINGS, FasterViT
from tests.conftest import TINY_ARCH_PLAIN as TINY_ARCH
from tests.fixtures.official import reference

OUTPUT_NORMS = tuple(f'norm{i}.' for i in range(4))


def stage_features(model, x):
    """Features of every stage before the output norms."""
    features = []
    hooks = [getattr(model, f'norm{i}').register_forward_pre_hook(
        lambda module, args: features.append(args[0])) for i in model.out_indices]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return features


def model_for_case(case):
    model = FasterViT(arch=reference.arch_of(case)).eval()
    backbone, _ = convert_official_state_dict(reference.official_state_dict(case))
    check_and_load(model, backbone, 'fixture', allowed_missing=OUTPUT_NORMS)
    return model


@pytest.mark.parametrize('name', reference.CASES)
def test_equals_official_network(name):
    """Same weights, eval, fp32: every stage's features match the official network's features
    before its downsamplers, at the native size and at larger square sizes (larger carrier grids,
    padded windows)."""
    case = reference.load_case(name)
    model = model_for_case(case)
    for item in case['cases']:
        with torch.no_grad():
            ours = stage_features(model, reference.case_input(item))
        assert len(ours) == len(item['features'])
        for stage, (mine, official) in enumerate(zip(ours, item['features'])):
            assert mine.shape == official.shape, (name, item['size'], stage)
            error = (mine - official).abs().max() / official.abs().max()
            assert error <= 1e-4, f'{name} @ {item["size"]}: stage {stage} error {error:.2e}'


def test_equivalence_check_detects_a_wrong_weight():
    case = reference.load_case('hat')
    model = model_for_case(case)
    with torch.no_grad():
        model.stages[2].carrier_init.conv.weight.mul_(1.2)
        item = case['cases'][-1]
        ours = stage_features(model, reference.case_input(item))
    error = (ours[2] - item['features'][2]).abs().max() / item['features'][2].abs().max()
    assert error > 1e-4


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_key_map_covers_every_official_weight(arch):
    """Every learned official weight of every variant maps onto one of ours with the same shape,
    and every weight of ours (output norms aside) comes from the official checkpoint."""
    layout = reference.variant_layouts()[arch]
    official = {k: torch.empty(0) for k in reference.learned_keys(layout['layout'])}
    backbone, classifier = convert_official_state_dict(official)
    assert set(classifier) == {k for k in official if k.startswith(('norm.', 'head.'))}
    with torch.device('meta'):
        model = FasterViT(arch=arch)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()
            if not k.startswith(OUTPUT_NORMS)}
    assert set(backbone) == set(ours)
    official_shapes = reference.learned_keys(layout['layout'])
    from mmfastervit.checkpoint.official import official_key_to_ours
    for key, shape in official_shapes.items():
        if not key.startswith(('norm.', 'head.')):
            assert ours[official_key_to_ours(key)] == shape, key


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_parameter_count_matches_official(arch):
    layout = reference.variant_layouts()[arch]
    with torch.device('meta'):
        model = FasterViT(arch=arch)
    ours = sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith(OUTPUT_NORMS))
    assert ours == layout['params'] - layout['head_params'] - layout['final_norm_params']


def test_registered_in_root_registry_for_mmdet_and_mmseg():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    assert MODELS.get('FasterViT') is FasterViT
    assert DET_MODELS.get('FasterViT') is FasterViT
    assert SEG_MODELS.get('FasterViT') is FasterViT


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(KeyError, match=r"'7'.*0, 1, 2, 3, 4, 5, 6, 4-21k-224"):
        FasterViT(arch='7')
    with pytest.raises(KeyError, match=r"'7'.*0, 1, 2, 3, 4, 5, 6, 4-21k-224"):
        FasterViT(arch=7)


def test_arch_number_names_the_variant():
    """``--cfg-options model.backbone.arch=2`` hands the backbone an int."""
    assert FasterViT(arch=2).arch_settings == FasterViT(arch='2').arch_settings


ALL_SIZES = [(224, 224), (511, 511), (112, 137), (32, 32)]


@pytest.mark.parametrize('arch,sizes', [('0', ALL_SIZES), ('1', ALL_SIZES),
                                        ('4-21k-224', [(112, 137), (32, 32)])])
def test_output_shapes_follow_ceil_rule(arch, sizes):
    model = FasterViT(arch=arch).eval()
    dim = ARCH_SETTINGS[arch]['dim']
    for height, width in sizes:
        with torch.no_grad():
            outs = model(torch.randn(1, 3, height, width))
        for i, out in enumerate(outs):
            stride = 4 * 2**i
            assert out.shape == (1, dim * 2**i, -(-height // stride), -(-width // stride))
            assert torch.isfinite(out).all()


def test_non_square_carrier_grid_and_padded_batch():
    """A 2-image batch of a rectangular size: the carrier grid is rectangular (3 x 5 windows in the
    HAT stage) and each image's features equal those it gets alone."""
    model = FasterViT(arch=TINY_ARCH).eval()
    x = torch.randn(2, 3, 320, 544)
    assert model.stages[2].geometry(20, 34)[1:] == (3, 5, 2)
    with torch.no_grad():
        batched = model(x)
        single = model(x[1:])
    for b, s in zip(batched, single):
        torch.testing.assert_close(b[1:], s, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('out_indices', [(1, 3), (2, )])
def test_out_indices(out_indices):
    model = FasterViT(arch=TINY_ARCH, out_indices=out_indices).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16 * 2**i for i in out_indices]
    assert not hasattr(model, 'norm0')


def test_bad_out_indices_and_frozen_stages():
    with pytest.raises(ValueError, match='out_indices'):
        FasterViT(arch=TINY_ARCH, out_indices=(0, 4))
    with pytest.raises(ValueError, match='frozen_stages'):
        FasterViT(arch=TINY_ARCH, frozen_stages=5)


def test_frozen_stages_max_leaves_nothing_trainable():
    model = FasterViT(arch=TINY_ARCH, frozen_stages=4)
    model.train()
    assert not [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))


def test_frozen_stages_partial():
    model = FasterViT(arch=TINY_ARCH, frozen_stages=1)
    model.train()
    assert not model.stem.norm1.training and not model.stages[0].blocks[0].norm1.training
    assert model.stages[1].blocks[0].norm1.training
    trainable = {n.split('.')[0] + '.' + n.split('.')[1] for n, p in model.named_parameters()
                 if p.requires_grad}
    assert 'stem.conv1' not in trainable and 'stages.0' not in trainable and 'norm0.weight' not in trainable
    assert 'stages.1' in trainable and 'norm1.weight' in trainable


def test_norm_eval_keeps_batchnorm_in_eval():
    model = FasterViT(arch=TINY_ARCH, norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert model.stages[2].blocks[0].norm1.training  # layer norms are unaffected


@pytest.mark.parametrize('conv_norm_cfg, batch_independent', [
    (None, False), (dict(type='GN', num_groups=4), True), (dict(type='IN', affine=True), True)])
def test_conv_norm_cfg_sets_the_conv_stages_norm(conv_norm_cfg, batch_independent):
    """The stem and conv blocks use BatchNorm unless told otherwise; a norm independent of the
    batch makes a training-mode forward pass of one image equal the eval-mode one, which
    BatchNorm's (per-image statistics against running averages) does not."""
    torch.manual_seed(0)
    model = FasterViT(arch=TINY_ARCH, drop_path_rate=0.0, conv_norm_cfg=conv_norm_cfg)
    norms = [model.stem.norm1, model.stem.norm2, model.stages[0].blocks[0].norm1,
             model.stages[1].blocks[0].norm2]
    expected = nn.BatchNorm2d if conv_norm_cfg is None else MODELS.get(conv_norm_cfg['type'])
    assert all(type(norm) is expected for norm in norms)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        trained = model.train()(x)
        tested = model.eval()(x)
    same = all(torch.allclose(a, b, atol=1e-5) for a, b in zip(trained, tested))
    assert same == batch_independent


def test_with_cp_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = FasterViT(arch=TINY_ARCH, drop_path_rate=0.0).train()
    checkpointed = FasterViT(arch=TINY_ARCH, drop_path_rate=0.0, with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 230, 260)
    losses = [sum(o.square().mean() for o in model(x)) for model in (plain, checkpointed)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[0], losses[1])
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_state_dict_holds_no_shape_dependent_tensors():
    """The window coordinate tables are buffers (so that they follow ``.to()``) but derived data:
    they must stay out of the state dict, whatever sizes the model has seen."""
    model = FasterViT(arch='0').eval()
    derived = {name for name, _ in model.named_buffers() if name.rsplit('.', 1)[1].startswith(
        'window_')}
    assert derived
    with torch.no_grad():
        model(torch.randn(1, 3, 96, 128))
        model(torch.randn(1, 3, 256, 320))
    keys = set(model.state_dict())
    assert not keys & derived
    assert keys == set(FasterViT(arch='0').state_dict())
    assert keys == set(FasterViT(arch='0', window_coord_norm='tokens').state_dict())


def test_input_rank_is_checked():
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        FasterViT(arch=TINY_ARCH)(torch.randn(3, 64, 64))


def test_input_channels_size_and_finiteness_are_checked():
    model = FasterViT(arch=TINY_ARCH, check_finite=True)
    with pytest.raises(ValueError, match='built for 3-channel images, got 1 channels'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r'at least 32x32 pixels .* got \(31, 64\)'):
        model(torch.randn(1, 3, 31, 64))
    x = torch.randn(1, 3, 64, 64)
    x[0, 0, 3, 3] = float('nan')
    with pytest.raises(ValueError, match='NaN or infinite values'):
        model(x)


def test_window_coordinates_of_the_dino_backbone():
    """``window_coord_norm='tokens'``: both coordinates of a window token are normalised by half the
    number of tokens in the window, (i - w*w//2) / (w*w//2), instead of half the window side."""
    from mmfastervit.models.fastervit import window_token_coords
    side, tokens = window_token_coords(7, 'side'), window_token_coords(7, 'tokens')
    rows = torch.arange(7.0).repeat_interleave(7)
    cols = torch.arange(7.0).repeat(7)
    torch.testing.assert_close(side, torch.stack([(rows - 3) / 3, (cols - 3) / 3], dim=1))
    torch.testing.assert_close(tokens, torch.stack([(rows - 24) / 24, (cols - 24) / 24], dim=1))
    block = FasterViT(arch=TINY_ARCH, window_coord_norm='tokens').stages[2].blocks[0]
    torch.testing.assert_close(block.window_coords, tokens)
    with pytest.raises(ValueError, match="window_coord_norm must be one of \\('side', 'tokens'\\)"):
        FasterViT(arch=TINY_ARCH, window_coord_norm='area')


def test_features_keep_the_input_memory_format_so_roi_align_reads_them_right():
    """mmcv's RoIAlign reads its input as a contiguous NCHW array whatever its strides, and mmdet's
    FPN passes a channels-last layout through: the backbone must return features in the images'
    own layout (channel LayerNorms compute channels-last views)."""
    from mmcv.ops import roi_align
    from mmdet.models.necks import FPN
    torch.manual_seed(0)
    model = FasterViT(arch=TINY_ARCH).eval()
    neck = FPN(in_channels=model.out_channels, out_channels=8, num_outs=4).eval()
    x = torch.randn(1, 3, 128, 160)
    rois = torch.tensor([[0, 2., 3., 60., 45.], [0, 50., 10., 120., 90.]])
    with torch.no_grad():
        features = model(x)
        assert all(f.is_contiguous() for f in features)
        level = neck(features)[0]
        expected = roi_align(level.contiguous(), rois, (7, 7), 0.25, 0, 'avg', True)
        torch.testing.assert_close(roi_align(level, rois, (7, 7), 0.25, 0, 'avg', True), expected)
        channels_last = model(x.contiguous(memory_format=torch.channels_last))
    assert all(f.is_contiguous(memory_format=torch.channels_last) for f in channels_last)


def test_outputs_with_autograd_equal_those_without():
    """With autograd on (training, or a frozen model fine-tuned through) attention is written out
    and BatchNorm runs unfolded where it trains; the values are those of the inference path, which
    the official fixtures check."""
    torch.manual_seed(0)
    model = FasterViT(arch=dict(TINY_ARCH, layer_scale=0.1, propagation=True)).eval()
    x = torch.randn(2, 3, 224, 256)
    with torch.no_grad():
        expected = model(x)
    for out, ref in zip(model(x), expected):
        torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-5)
