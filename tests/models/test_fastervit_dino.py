"""The backbone as the official DINO code defines it, and the whole DINO detector, against the
official code's outputs (reduced-size fixtures; ``tests/fixtures/official_dino/verify_full_size.py``
checks the full-size model by hand)."""
import pytest
import torch

from mmfastervit.checkpoint.official import check_and_load, convert_official_state_dict
from mmfastervit.checkpoint.official_dino import (COCO_CATEGORY_IDS,
                                                  convert_official_dino_state_dict, fit_to_model)
from mmfastervit.models.fastervit import FasterViT
from tests.fixtures.official_dino import reference

TOLERANCE = 1e-4  # relative: max abs difference / max abs value
DINO_DEFINITION = dict(window_coord_norm='tokens', pad_conv_stages=True)


def relative_error(ours: torch.Tensor, official: torch.Tensor) -> float:
    return ((ours - official).abs().max() / official.abs().max()).item()


@pytest.fixture(scope='module')
def backbone_fixture():
    return reference.load_fixture('backbone')


def official_dino_backbone(fixture: dict, **definition) -> FasterViT:
    """Our backbone with the fixture's weights, as the toy DINO config builds it (out_indices,
    BatchNorm output norms)."""
    settings = fixture['settings']
    arch = dict(depths=settings['depths'], dim=settings['dim'], in_dim=settings['in_dim'],
                num_heads=settings['num_heads'], window_size=settings['window_size'],
                ct_size=settings['ct_size'], hat=settings['hat'],
                layer_scale=settings['layer_scale'], mlp_ratio=settings['mlp_ratio'])
    model = FasterViT(arch=arch, out_indices=(1, 2, 3), norm_cfg=dict(type='BN'), **definition)
    backbone, classifier = convert_official_state_dict(reference.official_state_dict(fixture))
    assert not classifier
    check_and_load(model, backbone, 'official DINO backbone fixture')
    return model.eval()


def backbone_errors(model: FasterViT, fixture: dict) -> list:
    errors = []
    with torch.no_grad():
        for case in fixture['cases']:
            ours = model(reference.backbone_input(case['size'], case['input_seed']))
            assert [o.shape for o in ours] == [f.shape for f in case['features']]
            errors.append([relative_error(o, f) for o, f in zip(ours, case['features'])])
    return errors


def test_fixture_architecture_is_the_toy_dino_config(backbone_fixture):
    model = reference.build_detector('toy')
    settings = backbone_fixture['settings']
    def plain(value):
        return tuple(value) if isinstance(value, (list, tuple)) else value

    ours = model.backbone.arch_settings
    for key in ('depths', 'dim', 'in_dim', 'num_heads', 'window_size', 'hat', 'layer_scale'):
        assert plain(ours[key]) == plain(settings[key]), key
    detector = reference.load_fixture('detector')
    assert detector['backbone_settings'] == settings
    args = detector['args']
    assert (len(model.encoder.layers), len(model.decoder.layers)) == (args['enc_layers'],
                                                                      args['dec_layers'])
    assert model.num_queries == args['num_queries'] == model.test_cfg['max_per_img']
    assert model.num_feature_levels == args['num_feature_levels']
    assert model.encoder.layers[0].ffn.feedforward_channels == args['dim_feedforward']


def test_backbone_matches_the_official_dino_backbone(backbone_fixture):
    """Rectangular inputs whose stage maps hold no whole number of windows (200x304, 160x120,
    123x171), weights and BatchNorm statistics random, layer scale on."""
    errors = backbone_errors(official_dino_backbone(backbone_fixture, **DINO_DEFINITION),
                             backbone_fixture)
    assert max(max(e) for e in errors) <= TOLERANCE, errors


@pytest.mark.parametrize('definition', [
    dict(window_coord_norm='side', pad_conv_stages=True),
    dict(window_coord_norm='tokens', pad_conv_stages=False),
], ids=['window_coords_of_classification', 'conv_stages_unpadded'])
def test_each_difference_of_the_dino_definition_matters(backbone_fixture, definition):
    errors = backbone_errors(official_dino_backbone(backbone_fixture, **definition),
                             backbone_fixture)
    assert max(max(e) for e in errors) > 100 * TOLERANCE, errors


@pytest.fixture(scope='module')
def detector_fixture():
    return reference.load_fixture('detector')


@pytest.fixture(scope='module')
def detector(detector_fixture):
    """The toy DINO config's detector for the 80 COCO classes, with the official weights."""
    model = reference.build_detector('toy', num_classes=len(COCO_CATEGORY_IDS))
    state = convert_official_dino_state_dict(reference.official_state_dict(detector_fixture))
    model.load_state_dict(fit_to_model(model, state, 'official DINO fixture'), strict=True)
    return model


def test_detector_matches_the_official_dino(detector, detector_fixture):
    """Top-k scores, labels and boxes of one image and of a padded batch of two images of
    different sizes (masks on)."""
    for case in detector_fixture['cases']:
        for image in reference.paired_detections(detector, case):
            assert torch.equal(*image['labels'])
            assert relative_error(*image['scores']) <= TOLERANCE
            assert relative_error(*image['boxes']) <= TOLERANCE
    # the comparison covers several classes, not one that wins everywhere
    assert len(set(torch.cat([case['labels'].flatten()
                              for case in detector_fixture['cases']]).tolist())) > 3
