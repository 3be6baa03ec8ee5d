"""tools/test.py evaluates an official ImageNet checkpoint end to end: its scores are those of
the checkpoint's network on the official evaluation preprocessing, written independently here."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmfastervit.models import FasterViTClassifier
from tests.conftest import REPO, imagenet_eval_input, last_test_metrics, run_tool
from tests.fixtures.official import reference

CONFIG = REPO / 'configs' / 'cls' / 'fastervit-0_in1k.py'  # resize to 256, crop 224
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


def write_config(path: Path, arch: dict, num_classes: int, data_root: Path):
    path.write_text(
        f'_base_ = {str(CONFIG)!r}\n'
        f'model = dict(arch=dict(_delete_=True, **{arch!r}), num_classes={num_classes})\n'
        f'test_dataloader = dict(batch_size=4, num_workers=0, '
        f'dataset=dict(data_root={str(data_root)!r}))\n')


def expected_scores(case: dict, images) -> torch.Tensor:
    """Class probabilities of the official weights (backbone and head) on each image."""
    model = FasterViTClassifier(arch=reference.arch_of(case), num_classes=case['num_classes'])
    model.load_state_dict(reference.official_state_dict(case))
    with torch.no_grad():
        inputs = torch.cat([imagenet_eval_input(image, resize=256, crop=224) for image in images])
        return model.eval()(inputs).softmax(dim=1)


@pytest.mark.slow
def test_imagenet_evaluation_of_an_official_checkpoint(tmp_path):
    case = reference.load_case('hat')
    make_imagenet_folders(tmp_path / 'imagenet')
    checkpoint = reference.save_official_checkpoint(case, str(tmp_path / 'official.pth.tar'))
    config = tmp_path / 'config.py'
    write_config(config, reference.arch_of(case), case['num_classes'], tmp_path / 'imagenet')
    predictions = tmp_path / 'predictions.pkl'

    result = run_tool('tools/test.py', config, checkpoint, '--work-dir', tmp_path / 'work',
                      '--out', predictions, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(predictions, 'rb') as f:
        dumped = pickle.load(f)
    assert len(dumped) == len(WNIDS) * IMAGES_PER_CLASS
    labels = {Path(sample['img_path']).parent.name: int(sample['gt_label']) for sample in dumped}
    assert labels == {'n01000000': 0, 'n02000000': 1, 'n03000000': 2}

    expected = expected_scores(case, [sample['img_path'] for sample in dumped])
    scores = torch.stack([torch.as_tensor(sample['pred_score']) for sample in dumped])
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-6)
    targets = torch.tensor([int(sample['gt_label']) for sample in dumped])
    top5 = expected.topk(5, dim=1).indices
    top1_accuracy = 100 * (top5[:, 0] == targets).float().mean().item()
    top5_accuracy = 100 * (top5 == targets[:, None]).any(dim=1).float().mean().item()
    metrics = last_test_metrics(tmp_path / 'work')
    assert metrics['accuracy/top1'] == pytest.approx(top1_accuracy)
    assert metrics['accuracy/top5'] == pytest.approx(top5_accuracy)

    other_variant = dict(reference.arch_of(case), depths=[1, 1, 3, 2])
    write_config(config, other_variant, case['num_classes'], tmp_path / 'imagenet')
    result = run_tool('tools/test.py', config, checkpoint, '--work-dir', tmp_path / 'work',
                      timeout=120)
    assert result.returncode != 0
    assert 'CheckpointMismatchError' in result.stderr
    assert 'missing weights: backbone.stages.2.blocks.2.' in result.stderr
