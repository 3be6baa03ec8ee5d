"""Command line checks of tools/train.py and tools/test.py that fail before any model is built."""
import pytest
import torch

from tests.conftest import run_tool


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the error shown without CUDA')
def test_train_amp_without_gpu_is_an_error():
    result = run_tool('tools/train.py', 'any_config.py', '--amp')
    assert result.returncode == 2
    assert '--amp needs a CUDA GPU' in result.stderr


def test_test_out_must_be_a_pickle():
    result = run_tool('tools/test.py', 'any_config.py', 'any.pth', '--out', 'results.json')
    assert result.returncode == 2
    assert '.pkl' in result.stderr


DET_0 = 'configs/det/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_ms-crop-3x_coco.py'


def test_train_names_the_channels_a_changed_variant_needs():
    result = run_tool('tools/train.py', DET_0, '--cfg-options', 'model.backbone.arch=2')
    assert result.returncode != 0
    assert 'ConfigCheckError' in result.stderr
    assert 'model.neck.in_channels is [64, 128, 256, 512]' in result.stderr
    assert 'set in_channels=[96, 192, 384, 768]' in result.stderr


def test_train_and_test_name_a_missing_data_root(tmp_path):
    missing = tmp_path / 'no_coco'
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={missing}',
               f'test_dataloader.dataset.data_root={missing}']
    train = run_tool('tools/train.py', DET_0, '--work-dir', str(tmp_path), *options)
    test = run_tool('tools/test.py', DET_0, 'any.pth', '--work-dir', str(tmp_path), *options)
    assert f'train data_root {missing} does not exist' in train.stderr
    assert f'test data_root {missing} does not exist' in test.stderr
    assert train.returncode != 0 and test.returncode != 0
