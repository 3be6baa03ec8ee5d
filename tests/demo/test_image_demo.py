import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import mmfastervit  # noqa: F401
from mmfastervit.engine.runner_utils import adapt_to_cpu
from tests.conftest import REPO, output_of, run_tool

DET_CONFIG = REPO / 'configs' / 'det' / 'toy' / (
    'cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py')
SEG_CONFIG = REPO / 'configs' / 'seg' / 'toy' / 'upernet_fastervit-0_toy-ade-224x224.py'
COLOUR = (30, 200, 60)


def save_random_model(config: Path, path: Path):
    """A checkpoint of the config's model with random weights and the dataset meta that
    tools/train.py would store."""
    cfg = Config.fromfile(str(config))
    adapt_to_cpu(cfg)
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
        dataset_meta = dict(classes=cfg.metainfo['classes'])
    else:
        from mmseg.datasets import ADE20KDataset
        from mmseg.registry import MODELS
        dataset_meta = ADE20KDataset(metainfo=cfg.metainfo, lazy_init=True).metainfo
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dataset_meta)), path)


@pytest.mark.slow
@pytest.mark.parametrize('config', [DET_CONFIG, SEG_CONFIG], ids=['det', 'seg'])
def test_draws_predictions(tmp_path, config):
    checkpoint = tmp_path / 'model.pth'
    save_random_model(config, checkpoint)
    images = tmp_path / 'images'
    images.mkdir()
    plain = np.zeros((96, 128, 3), dtype=np.uint8)
    plain[:] = COLOUR
    Image.fromarray(plain).save(images / 'plain.png')
    out_dir = tmp_path / 'out'

    output = output_of(
        run_tool('demo/image_demo.py', images, config, checkpoint, '--out-dir', out_dir,
                 '--device', 'cpu', '--score-thr', '0', timeout=120))
    assert f'written to {out_dir / "vis"}' in output
    drawn = np.asarray(Image.open(out_dir / 'vis' / 'plain.png').convert('RGB')).astype(int)
    assert drawn.shape == plain.shape
    # boxes, masks or the label map cover part of the plain image
    changed = np.abs(drawn - plain).max(axis=-1) > 40
    assert changed.mean() > 0.05


def test_classification_config_is_pointed_to_classify(tmp_path, monkeypatch):
    demo = REPO / 'demo' / 'image_demo.py'
    monkeypatch.setattr(sys, 'argv', [str(demo), str(tmp_path), str(REPO / 'configs' / 'cls' /
                                                                   'fastervit-0_in1k.py'),
                                      str(tmp_path / 'model.pth')])
    with pytest.raises(SystemExit, match='demo/classify.py'):
        runpy.run_path(str(demo), run_name='__main__')
