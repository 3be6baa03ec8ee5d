import runpy
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmfastervit.datasets import imagenet_classes
from mmfastervit.models import FasterViTClassifier
from tests.conftest import REPO
from tests.conftest import TINY_ARCH_ONE_BLOCK_PER_STAGE as TINY_ARCH
from tests.conftest import imagenet_eval_input

DEMO = REPO / 'demo' / 'classify.py'
CONFIG = REPO / 'configs' / 'cls' / 'fastervit-0_in1k.py'  # resize to 256, crop 224


def run_demo(monkeypatch, *args) -> dict:
    monkeypatch.setattr(sys, 'argv', [str(DEMO), *map(str, args)])
    return runpy.run_path(str(DEMO), run_name='__main__')


def test_prints_the_top_classes_of_the_preprocessed_image(tmp_path, monkeypatch, capsys):
    """Random weights everywhere, and an image with detail at every scale: the printed classes
    depend on the checkpoint's backbone and head and on each preprocessing step."""
    torch.manual_seed(0)
    model = FasterViTClassifier(arch=TINY_ARCH, num_classes=1000).eval()
    with torch.no_grad():
        model.head.fc.weight.normal_(std=2.0)  # spreads the probabilities out
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    config = tmp_path / 'tiny_in1k.py'
    config.write_text(f'_base_ = {str(CONFIG)!r}\n'
                      f'model = dict(arch=dict(_delete_=True, **{TINY_ARCH!r}))\n')
    image = tmp_path / 'image.png'
    pixels = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    with torch.no_grad():
        expected = model(imagenet_eval_input(image, resize=256, crop=224))[0].softmax(0)

    demo = run_demo(monkeypatch, image, checkpoint, '--config', config, '--topk', '3')
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    top_scores, top_labels = expected.topk(3)
    for rank, (line, score, label) in enumerate(zip(lines, top_scores, top_labels), 1):
        percent, name = line.split('%  ')
        assert percent.startswith(f'{rank}. ')
        assert float(percent[len(f'{rank}. '):]) == pytest.approx(100 * score.item(), abs=0.01)
        assert name == f'{imagenet_classes()[label]} ({label})'

    scores = demo['classify'](str(image), Config.fromfile(str(config)), str(checkpoint))
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-6)


def test_unknown_arch_is_an_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_demo(monkeypatch, tmp_path / 'image.jpg', tmp_path / 'ckpt.pth', '--arch', '7')
    assert "no config for arch '7'" in capsys.readouterr().err
