"""The ImageNet evaluation configs: one per official checkpoint, with its preprocessing."""
from pathlib import Path

import pytest
from mmengine.config import Config

import mmfastervit  # noqa: F401
from mmfastervit.models.fastervit import ARCH_SETTINGS

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'cls'
CHECKPOINT_ROOT = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
# arch: (checkpoint file, resize step, crop size), the resize as timm's evaluation: the short side
# to floor(crop / crop_pct), or both sides ('squash') for the ImageNet-21K models.
VARIANTS = {
    '0': ('fastervit_0_224_1k.pth.tar', dict(type='ResizeShortSide', size=256), 224),
    **{arch: (f'fastervit_{arch}_224_1k.pth.tar', dict(type='ResizeShortSide', size=224), 224)
       for arch in '123456'},
    '4-21k-224': ('fastervit_4_21k_224_w14.pth.tar', dict(type='Resize', scale=(235, 235)), 224),
    '4-21k-384': ('fastervit_4_21k_384_w24.pth.tar', dict(type='Resize', scale=(384, 384)), 384),
    '4-21k-512': ('fastervit_4_21k_512_w32.pth.tar', dict(type='Resize', scale=(512, 512)), 512),
    '4-21k-768': ('fastervit_4_21k_768_w48.pth.tar', dict(type='Resize', scale=(825, 825)), 768),
}


def test_a_config_for_every_variant():
    assert sorted(VARIANTS) == sorted(ARCH_SETTINGS)
    names = sorted(path.name for path in CONFIG_DIR.glob('*.py'))
    assert names == sorted(f'fastervit-{arch}_in1k.py' for arch in VARIANTS)


@pytest.mark.parametrize('arch', VARIANTS)
def test_variant_config(arch):
    checkpoint, resize, crop = VARIANTS[arch]
    path = CONFIG_DIR / f'fastervit-{arch}_in1k.py'
    cfg = Config.fromfile(str(path))
    assert cfg.model.type == 'FasterViTClassifier'
    assert cfg.model.arch == arch and cfg.model.num_classes == 1000
    assert CHECKPOINT_ROOT + checkpoint in path.read_text()
    assert cfg.default_scope == 'mmengine'
    dataset = cfg.test_dataloader.dataset
    assert dataset.type == 'ImageNet' and dataset.data_root == 'data/imagenet'
    assert dataset.data_prefix == dict(img_path='val')
    load, resize_step, crop_step, pack = dataset.pipeline
    assert load == dict(type='LoadImageFromFile', imdecode_backend='pillow',
                        color_type='color_ignore_orientation')
    assert dict(resize_step, interpolation='bicubic', backend='pillow') == resize_step
    assert {key: resize_step[key] for key in resize} == resize
    if resize['type'] == 'Resize':
        assert resize_step.keep_ratio is False
    assert crop_step == dict(type='CenterCrop', crop_size=crop)
    assert pack.type == 'PackClsInputs'
    assert cfg.test_evaluator == dict(type='Accuracy', topk=(1, 5))
    assert cfg.test_cfg.type == 'TestLoop'
