import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import TRANSFORMS
from PIL import Image

from mmfastervit.datasets import PackClsInputs, ResizeShortSide

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'cls')


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize('height,width,expected', [
    (427, 640, (256, 383)),  # 383.7: truncated, where rounding would give 384
    (640, 427, (383, 256)),
    (300, 300, (256, 256)),
    (200, 301, (256, 385)),
])
def test_resize_short_side_truncates_the_long_side_like_torchvision(height, width, expected):
    img = random_image(height, width)
    results = ResizeShortSide(256)(dict(img=img))
    assert results['img'].shape[:2] == expected
    assert results['img_shape'] == expected
    reference = Image.fromarray(img).resize(expected[::-1], Image.BICUBIC)
    np.testing.assert_array_equal(results['img'], np.asarray(reference))


def test_resize_short_side_rejects_a_bad_size():
    with pytest.raises(ValueError, match='positive'):
        ResizeShortSide(0)


def test_pack_cls_inputs():
    img = random_image(5, 7)
    packed = TRANSFORMS.build(dict(type='PackClsInputs'))(
        dict(img=img, gt_label=3, img_path='a.JPEG', img_shape=(5, 7), ignored=1))
    inputs, sample = packed['inputs'], packed['data_samples']
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 5, 7)
    assert torch.equal(inputs, torch.from_numpy(img).permute(2, 0, 1))
    assert torch.equal(sample.gt_label, torch.tensor([3]))
    assert sample.metainfo == dict(img_path='a.JPEG', img_shape=(5, 7))
    gray = PackClsInputs()(dict(img=img[..., 0]))
    assert gray['inputs'].shape == (1, 5, 7)
    assert 'gt_label' not in gray['data_samples']


def timm_eval_preprocessing(path, img_size, crop_pct, squash):
    """timm's evaluation transforms (PIL decoding, bicubic resize to floor(img_size / crop_pct),
    centre crop) written out with PIL: the uint8 RGB crop."""
    image = Image.open(path).convert('RGB')
    scale = int(img_size / crop_pct)
    width, height = image.size
    if squash:
        size = (scale, scale)
    elif width <= height:
        size = (scale, int(scale * height / width))
    else:
        size = (int(scale * width / height), scale)
    image = image.resize(size, Image.BICUBIC)
    top = int(round((size[1] - img_size) / 2.0))
    left = int(round((size[0] - img_size) / 2.0))
    return np.asarray(image.crop((left, top, left + img_size, top + img_size)))


@pytest.mark.parametrize('config,img_size,crop_pct,squash', [
    ('fastervit-0_in1k.py', 224, 0.875, False),
    ('fastervit-2_in1k.py', 224, 1.0, False),
    ('fastervit-4-21k-224_in1k.py', 224, 0.95, True),
    ('fastervit-4-21k-384_in1k.py', 384, 1.0, True),
])
@pytest.mark.parametrize('height,width', [(333, 500), (530, 397)])
def test_config_pipelines_reproduce_timm_evaluation(tmp_path, config, img_size, crop_pct, squash,
                                                    height, width):
    path = str(tmp_path / 'image.JPEG')
    Image.fromarray(random_image(height, width, seed=height)).save(path, quality=90)
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    packed = pipeline(dict(img_path=path, gt_label=0))
    ours_rgb = packed['inputs'].flip(0).permute(1, 2, 0).numpy()  # loaded as BGR
    np.testing.assert_array_equal(ours_rgb,
                                  timm_eval_preprocessing(path, img_size, crop_pct, squash))
