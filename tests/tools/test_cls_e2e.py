import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures.official import reference

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES = 10
# A zero classifier weight leaves the bias as the logits: class 1 ranks first, then 0, 3, 4, 5,
# ..., and class 2 last.
HEAD_BIAS = [0.9, 1.0, -1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.5]
WNIDS = ['n03000000', 'n01000000', 'n02000000']  # labels 2, 0, 1 (sorted order)
IMAGES_PER_CLASS = 4


def make_imagenet_folders(root: Path):
    rng = np.random.default_rng(0)
    for wnid in WNIDS:
        (root / 'val' / wnid).mkdir(parents=True)
        for i in range(IMAGES_PER_CLASS):
            height, width = rng.integers(180, 300, size=2)
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / 'val' / wnid / f'{wnid}_{i}.JPEG')


def make_official_checkpoint(case, path: Path):
    state = reference.official_state_dict(case)
    state['head.weight'] = torch.zeros_like(state['head.weight'])
    state['head.bias'] = torch.tensor(HEAD_BIAS, dtype=state['head.bias'].dtype)
    torch.save({'epoch': 309, 'state_dict': state, 'metric': 0.0}, path)


def write_config(path: Path, arch: dict, data_root: Path):
    path.write_text(
        f"_base_ = {str(REPO / 'configs' / 'cls' / 'fastervit-0_in1k.py')!r}\n"
        f'model = dict(arch=dict(_delete_=True, **{arch!r}), num_classes={NUM_CLASSES})\n'
        f'test_dataloader = dict(batch_size=4, num_workers=0, '
        f'dataset=dict(data_root={str(data_root)!r}))\n')


def run_test_tool(*args):
    # run this checkout's package
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')])))
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'test.py'), *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_imagenet_evaluation_of_an_official_checkpoint(tmp_path):
    case = reference.load_case('hat')
    make_imagenet_folders(tmp_path / 'imagenet')
    checkpoint = tmp_path / 'official.pth.tar'
    make_official_checkpoint(case, checkpoint)
    config = tmp_path / 'config.py'
    write_config(config, reference.arch_of(case), tmp_path / 'imagenet')
    predictions = tmp_path / 'predictions.pkl'

    result = run_test_tool(config, checkpoint, '--work-dir', tmp_path / 'work', '--out',
                           predictions)
    assert result.returncode == 0, result.stderr[-3000:]
    # Every image is predicted as class 1 (the folder n02000000); classes 0 and 1 are in the top 5.
    assert 'accuracy/top1: 33.3333  accuracy/top5: 66.6667' in result.stdout + result.stderr
    with open(predictions, 'rb') as f:
        dumped = pickle.load(f)
    assert len(dumped) == len(WNIDS) * IMAGES_PER_CLASS
    assert all(int(sample['pred_label']) == 1 for sample in dumped)
    labels = {Path(sample['img_path']).parent.name: int(sample['gt_label']) for sample in dumped}
    assert labels == {'n01000000': 0, 'n02000000': 1, 'n03000000': 2}

    other_variant = dict(reference.arch_of(case), depths=[1, 1, 3, 2])
    write_config(config, other_variant, tmp_path / 'imagenet')
    result = run_test_tool(config, checkpoint, '--work-dir', tmp_path / 'work')
    assert result.returncode != 0
    assert 'CheckpointMismatchError' in result.stderr
    assert 'missing weights: backbone.stages.2.blocks.2.' in result.stderr
