"""Official FasterViT DINO checkpoints on MMDetection's DINO: the key mapping, the class layout, and
loading the published file's layout through the Runner's hook."""
import logging
import types

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint_to_model

from mmfastervit.checkpoint.official import CheckpointMismatchError
from mmfastervit.checkpoint.official_dino import (COCO_CATEGORY_IDS, OfficialDINOCheckpointHook,
                                                  convert_official_dino_state_dict, fit_to_model,
                                                  is_official_dino)
from tests.fixtures.official_dino import reference


@pytest.fixture(scope='module')
def official_state():
    return reference.official_state_dict(reference.load_fixture('detector'))


@pytest.mark.parametrize('name', ['4scale', '5scale'])
def test_published_layout_maps_onto_the_config_model_exactly(name):
    """Every tensor of the full-size official checkpoint has a place in the model our config builds,
    with its shape, and every weight of that model comes from the checkpoint."""
    state = reference.published_layout_state(name)
    assert is_official_dino(state)
    model = reference.build_detector(name, device='meta')
    converted = fit_to_model(model, convert_official_dino_state_dict(state), name)
    assert set(converted) == set(model.state_dict())


def test_coco_class_rows_follow_the_category_ids(official_state):
    state = dict(official_state)
    ids = torch.arange(91, dtype=torch.float32)
    for key in ('class_embed.0.bias', 'transformer.decoder.class_embed.0.bias',
                'transformer.enc_out_class_embed.bias'):
        state[key] = ids
    state['label_enc.weight'] = torch.arange(92, dtype=torch.float32)[:, None].expand(92, 256)
    converted = convert_official_dino_state_dict(state)
    expected = torch.tensor(COCO_CATEGORY_IDS, dtype=torch.float32)
    assert torch.equal(converted['bbox_head.cls_branches.0.bias'], expected)
    assert torch.equal(converted['bbox_head.cls_branches.3.bias'], expected)  # the encoder's
    assert torch.equal(converted['dn_query_generator.label_embedding.weight'][:, 0], expected)
    # the fixtures suppress exactly the ids that are no COCO category
    assert sorted(reference.load_fixture('detector')['suppressed_class_ids']) == sorted(
        set(range(91)) - set(COCO_CATEGORY_IDS))


def test_shared_prediction_layers_are_copied_to_every_decoder_layer(official_state):
    converted = convert_official_dino_state_dict(official_state)
    rows = list(COCO_CATEGORY_IDS)
    for layer in range(3):  # the fixture's decoder layers
        assert torch.equal(converted[f'bbox_head.cls_branches.{layer}.weight'],
                           official_state['class_embed.0.weight'][rows])
        assert torch.equal(converted[f'bbox_head.reg_branches.{layer}.4.bias'],
                           official_state['bbox_embed.0.layers.2.bias'])
    # the encoder's own come last
    assert torch.equal(converted['bbox_head.reg_branches.3.0.weight'],
                       official_state['transformer.enc_out_bbox_embed.layers.0.weight'])


def test_copies_of_a_shared_layer_that_differ_are_an_error(official_state):
    state = dict(official_state)
    state['transformer.decoder.bbox_embed.1.layers.0.weight'] = torch.zeros(256, 256)
    with pytest.raises(CheckpointMismatchError, match=r'transformer\.decoder\.bbox_embed\.1'):
        convert_official_dino_state_dict(state)


def test_unmapped_tensors_are_an_error_that_names_them(official_state):
    state = dict(official_state, **{'transformer.two_stage_wh_embedding.weight': torch.zeros(1, 2),
                                    'backbone.0.head.weight': torch.zeros(10, 128)})
    with pytest.raises(CheckpointMismatchError) as error:
        convert_official_dino_state_dict(state)
    assert 'transformer.two_stage_wh_embedding.weight' in str(error.value)
    assert 'backbone.0.head.weight' in str(error.value)


def test_other_class_layouts_are_refused(official_state):
    state = dict(official_state)
    state['transformer.enc_out_class_embed.bias'] = torch.zeros(21)
    with pytest.raises(CheckpointMismatchError, match='enc_out_class_embed.bias has 21 class rows'):
        convert_official_dino_state_dict(state)


def test_wrong_variant_lists_the_mismatching_shapes(official_state):
    converted = convert_official_dino_state_dict(official_state)
    model = reference.build_detector('4scale', device='meta')  # FasterViT-4-21K-224, 6+6 layers
    with pytest.raises(CheckpointMismatchError) as error:
        fit_to_model(model, converted, 'reduced.pth')
    message = str(error.value)
    assert 'shape mismatches' in message
    assert 'backbone.norm1.bias: checkpoint (32,) vs model (392,)' in message
    assert 'missing weights' in message and 'backbone.stages.0.blocks.1.' in message


def run_hook(model, path, **cfg):
    """What the Runner does with ``load_from=path``: load, call the hook, load into the model."""
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    runner = types.SimpleNamespace(model=model, cfg=Config(dict(load_from=path, **cfg)))
    OfficialDINOCheckpointHook().after_load_checkpoint(runner, checkpoint)
    _load_checkpoint_to_model(model, checkpoint, strict=False)
    return checkpoint


@pytest.mark.parametrize('module_prefix', [False, True])
def test_published_file_layout_loads_through_the_hook(tmp_path, official_state, module_prefix):
    path = reference.save_official_checkpoint(official_state, str(tmp_path / 'dino.pth'),
                                              module_prefix)
    model = reference.build_detector('toy', num_classes=80)
    checkpoint = run_hook(model, path)
    assert set(checkpoint) == {'state_dict'}  # the official training state is not loaded
    expected = fit_to_model(model, convert_official_dino_state_dict(official_state), path)
    own = model.state_dict()
    assert set(expected) == set(own)
    assert all(torch.equal(own[k], v) for k, v in expected.items())


def test_fine_tuning_for_other_classes_initialises_the_classifiers_afresh(tmp_path, official_state):
    path = reference.save_official_checkpoint(official_state, str(tmp_path / 'dino.pth'))
    model = reference.build_detector('toy')  # the toy shapes: 5 classes
    model.init_weights()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        run_hook(model, path)
    finally:
        logger.removeHandler(handler)
    assert any('classifies the 80 COCO categories and this model 5 classes' in m for m in messages)
    own = model.state_dict()
    for key in ('bbox_head.cls_branches.0.weight', 'dn_query_generator.label_embedding.weight'):
        assert torch.equal(own[key], initial[key])
    assert not torch.equal(own['level_embed'], initial['level_embed'])
    assert torch.equal(own['level_embed'], official_state['transformer.level_embed'])


def test_official_checkpoint_cannot_be_resumed(tmp_path, official_state):
    path = reference.save_official_checkpoint(official_state, str(tmp_path / 'dino.pth'))
    model = reference.build_detector('toy', num_classes=80)
    with pytest.raises(CheckpointMismatchError, match='cannot be resumed'):
        run_hook(model, path, resume=True)


def test_other_checkpoints_pass_through(tmp_path):
    model = reference.build_detector('toy')
    path = str(tmp_path / 'ours.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 3}}, path)
    checkpoint = run_hook(model, path)
    assert checkpoint['meta'] == {'epoch': 3}
