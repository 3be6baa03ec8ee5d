import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmfastervit.models import FasterViTClassifier

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / 'demo' / 'classify.py'
TINY_ARCH = dict(depths=(1, 1, 1, 1), dim=8, in_dim=8, num_heads=(1, 1, 2, 2))


def run_demo(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', [str(DEMO), *map(str, args)])
    runpy.run_path(str(DEMO), run_name='__main__')


def test_prints_top_imagenet_classes(tmp_path, monkeypatch, capsys):
    model = FasterViTClassifier(arch=TINY_ARCH, num_classes=1000)
    torch.nn.init.zeros_(model.head.fc.weight)
    with torch.no_grad():
        model.head.fc.bias.zero_()
        model.head.fc.bias[207] = 10.0  # golden retriever
        model.head.fc.bias[281] = 9.0  # tabby, tabby cat
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    config = tmp_path / 'tiny_in1k.py'
    config.write_text(f"_base_ = {str(REPO / 'configs' / 'cls' / 'fastervit-0_in1k.py')!r}\n"
                      f'model = dict(arch=dict(_delete_=True, **{TINY_ARCH!r}))\n')
    image = tmp_path / 'image.jpg'
    Image.fromarray(np.full((240, 320, 3), 127, dtype=np.uint8)).save(image)

    run_demo(monkeypatch, image, checkpoint, '--config', config, '--topk', '3')
    lines = capsys.readouterr().out.strip().splitlines()
    total = math.exp(10) + math.exp(9) + 998
    assert lines[0] == f'1. {100 * math.exp(10) / total:6.2f}%  golden retriever (207)'
    assert lines[1] == f'2. {100 * math.exp(9) / total:6.2f}%  tabby, tabby cat (281)'
    assert lines[2].startswith(f'3. {100 / total:6.2f}%  ')
    assert len(lines) == 3


def test_unknown_arch_is_an_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_demo(monkeypatch, tmp_path / 'image.jpg', tmp_path / 'ckpt.pth', '--arch', '7')
    assert "no config for arch '7'" in capsys.readouterr().err
