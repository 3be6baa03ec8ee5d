import pytest
import torch
from mmengine.registry import MODELS
from mmengine.runner import load_checkpoint
from mmengine.structures import BaseDataElement

import mmfastervit  # noqa: F401
from mmfastervit.checkpoint.official import CheckpointMismatchError
from mmfastervit.models.classifier import FasterViTClassifier, _prepare_state_dict
from mmfastervit.models.fastervit import ARCH_SETTINGS
from tests.conftest import TINY_ARCH_ONE_BLOCK_PER_STAGE as TINY_ARCH
from tests.fixtures.official import reference



def classifier_for(case, **kwargs):
    return FasterViTClassifier(arch=reference.arch_of(case), num_classes=case['num_classes'],
                               **kwargs)


def assert_official_logits(model, case):
    model.eval()
    for item in case['cases']:
        with torch.no_grad():
            logits = model(reference.case_input(item))
        official = item['logits']
        assert logits.shape == official.shape
        assert (logits - official).abs().max() <= 1e-4 * official.abs().max(), item['size']


@pytest.mark.parametrize('name', reference.CASES)
def test_official_checkpoint_via_init_cfg_gives_official_logits(tmp_path, name):
    case = reference.load_case(name)
    path = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    model = classifier_for(case, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    assert_official_logits(model, case)


@pytest.mark.parametrize('name', reference.CASES)
def test_official_checkpoint_via_load_checkpoint_gives_official_logits(tmp_path, name):
    case = reference.load_case(name)
    path = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    model = classifier_for(case)
    load_checkpoint(model, path, map_location='cpu')
    assert_official_logits(model, case)


def test_official_checkpoint_with_weights_under_model_key(tmp_path):
    """mmengine's load_checkpoint hands the whole training dict over when there is no
    ``state_dict``: the hook finds the weights under ``model``."""
    case = reference.load_case('hat_layerscale')
    path = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'),
                                              wrapper_key='model', module_prefix=False)
    model = classifier_for(case)
    load_checkpoint(model, path, map_location='cpu')
    assert_official_logits(model, case)


def test_official_state_dict_via_load_state_dict():
    case = reference.load_case('hat')
    model = classifier_for(case)
    model.load_state_dict(reference.official_state_dict(case))
    assert_official_logits(model, case)


def test_own_checkpoint_round_trip(tmp_path):
    case = reference.load_case('hat_layerscale')
    official = classifier_for(case)
    official.load_state_dict(reference.official_state_dict(case))
    path = str(tmp_path / 'ours.pth')
    torch.save(dict(state_dict=official.state_dict(), meta=dict()), path)
    model = classifier_for(case)
    load_checkpoint(model, path)
    assert_official_logits(model, case)


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_every_official_variant_layout_fits_its_classifier(arch):
    """The whole official state dict of each variant (derived buffers, final norm and 1000-class
    head included) passes the strict check of the loading hook; that of another variant does
    not."""
    def zero_weights(variant):  # expanded scalars: the shapes without the memory
        return {key: torch.zeros(()).expand(shape)
                for key, shape, _ in reference.variant_layouts()[variant]['layout']}

    with torch.device('meta'):
        model = FasterViTClassifier(arch=arch)
    layout = zero_weights(arch)
    other_layout = zero_weights('1' if arch == '0' else '0')
    hook_args = ('', {}, True, [], [], [])
    _prepare_state_dict(model, layout, *hook_args)
    assert {k: v.shape for k, v in layout.items()} == {
        k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError):
        _prepare_state_dict(model, other_layout, *hook_args)


def test_wrong_variant_checkpoint_raises_and_loads_nothing(tmp_path):
    case = reference.load_case('hat')
    path = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    model = FasterViTClassifier(arch=dict(reference.arch_of(case), dim=16), num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r'(?s)another variant.*shape mismatches: .*'
                       r'backbone.stages.0.blocks.0.conv1.weight: checkpoint \(8, 8, 3, 3\)'):
        load_checkpoint(model, path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    model.init_cfg = dict(type='Pretrained', checkpoint=path)
    with pytest.raises(CheckpointMismatchError):
        model.init_weights()


def test_checkpoint_with_other_number_of_classes_raises(tmp_path):
    case = reference.load_case('hat')
    path = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    model = classifier_for(case)
    model.head.fc = torch.nn.Linear(model.head.fc.in_features, 1000)
    with pytest.raises(CheckpointMismatchError, match=r'head.fc.weight: checkpoint \(10, '):
        load_checkpoint(model, path)


def test_backbone_only_checkpoint_lists_missing_head(tmp_path):
    model = FasterViTClassifier(arch=TINY_ARCH, num_classes=3)
    backbone_only = {k: v for k, v in model.state_dict().items() if k.startswith('backbone.')}
    path = str(tmp_path / 'backbone.pth')
    torch.save(dict(state_dict=backbone_only), path)
    with pytest.raises(CheckpointMismatchError, match='2 missing weights: head.fc.bias, '
                                                      'head.fc.weight'):
        load_checkpoint(model, path)


def build_tiny():
    return MODELS.build(dict(type='FasterViTClassifier', arch=TINY_ARCH, num_classes=3)).eval()


def test_registered_and_default_preprocessing_is_imagenet_normalisation():
    model = build_tiny()
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    batch = model.data_preprocessor(dict(inputs=[image], data_samples=None))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    expected = (image.flip(0).float() / 255 - mean) / std  # BGR image, RGB statistics
    assert torch.allclose(batch['inputs'][0], expected, atol=1e-5)


def test_predict_mode_fills_scores_and_labels():
    model = build_tiny()
    inputs = torch.randn(2, 3, 64, 64)
    samples = [BaseDataElement(gt_label=torch.tensor([1])), BaseDataElement()]
    with torch.no_grad():
        logits = model(inputs)
        predictions = model(inputs, samples, mode='predict')
    assert predictions is samples
    for sample, row in zip(predictions, logits):
        assert torch.allclose(sample.pred_score, torch.exp(row) / torch.exp(row).sum())
        assert sample.pred_label.item() == row.argmax().item()
    assert len(model(inputs, mode='predict')) == 2


def test_loss_mode_is_cross_entropy():
    model = build_tiny()
    inputs = torch.randn(2, 3, 64, 64)
    samples = [BaseDataElement(gt_label=torch.tensor([label])) for label in (2, 0)]
    with torch.no_grad():
        logits = model(inputs)
        loss = model(inputs, samples, mode='loss')['loss']
    log_probs = logits - logits.exp().sum(dim=1, keepdim=True).log()
    assert torch.allclose(loss, -(log_probs[0, 2] + log_probs[1, 0]) / 2)


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match='mode'):
        build_tiny()(torch.randn(1, 3, 32, 32), mode='logits')
