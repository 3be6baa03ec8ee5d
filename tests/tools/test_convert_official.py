import pytest
import torch

from mmfastervit.models.fastervit import FasterViT
from tests import conftest
from tests.fixtures.official import reference
from tests.fixtures.official_dino import reference as dino_reference


def run_tool(*args):
    return conftest.run_tool('tools/convert_official.py', *args)


def test_converted_weights_load_as_backbone_and_detector_init(tmp_path):
    case = reference.load_case('hat')
    src = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    plain, prefixed = str(tmp_path / 'plain.pth'), str(tmp_path / 'prefixed.pth')
    result = run_tool(src, plain)
    assert result.returncode == 0, result.stderr
    assert 'dropped 7 classifier tensors' in result.stdout  # final BatchNorm (5) + linear (2)
    assert run_tool(src, prefixed, '--backbone-prefix').returncode == 0

    arch = reference.arch_of(case)
    model = FasterViT(arch=arch, init_cfg=dict(type='Pretrained', checkpoint=plain))
    model.init_weights()
    item = case['cases'][0]
    features = []
    model.norm3.register_forward_pre_hook(lambda m, args: features.append(args[0]))
    with torch.no_grad():
        model.eval()(reference.case_input(item))
    official = item['features'][3]
    assert (features[0] - official).abs().max() <= 1e-4 * official.abs().max()

    saved = torch.load(prefixed, weights_only=True)['state_dict']
    assert saved and all(k.startswith('backbone.') for k in saved)


def test_arch_check_and_non_official_input(tmp_path):
    case = reference.load_case('hat')
    src = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    result = run_tool(src, str(tmp_path / 'out.pth'), '--arch', '0')
    assert result.returncode != 0 and 'shape mismatches' in result.stderr
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {'conv.weight': torch.zeros(1)}}, other)
    result = run_tool(str(other), str(tmp_path / 'out.pth'))
    assert result.returncode != 0 and 'does not hold official FasterViT weights' in result.stderr


def test_official_dino_detector_converts_for_mmdetection(tmp_path):
    official = dino_reference.official_state_dict(dino_reference.load_fixture('detector'))
    src = dino_reference.save_official_checkpoint(official, str(tmp_path / 'dino.pth'))
    dst = tmp_path / 'mmdet_dino.pth'
    result = run_tool(src, str(dst))
    assert result.returncode == 0, result.stderr
    assert "tensors of MMDetection's DINO" in result.stdout
    converted = torch.load(dst, weights_only=True)
    model = dino_reference.build_detector('toy', num_classes=80)
    model.load_state_dict(converted['state_dict'], strict=True)
    assert converted['meta']['dataset_meta']['classes'][:2] == ('person', 'bicycle')

    result = run_tool(src, str(tmp_path / 'out.pth'), '--config', dino_reference.CONFIGS['4scale'])
    assert result.returncode != 0 and 'shape mismatches' in result.stderr
