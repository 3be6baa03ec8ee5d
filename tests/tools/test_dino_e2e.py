"""The toy DINO config end to end on a generated toy COCO dataset (boxes only): tools/train.py from
scratch, resumed, tools/test.py, and fine-tuning from an official-format DINO checkpoint."""
import shutil
from pathlib import Path

import pytest

from mmfastervit.datasets import generate_coco
from tests.conftest import REPO, last_test_metrics, output_of, run_tool
from tests.fixtures.official_dino import reference

pytestmark = pytest.mark.slow

CONFIG = REPO / 'configs' / 'det' / 'toy' / 'dino-4scale_fastervit-tiny_toy-shapes.py'


def short_run(max_iters: int) -> list:
    """Options of a run of ``max_iters`` iterations saving every iteration, without validation."""
    return ['--cfg-options', f'train_cfg.max_iters={max_iters}',
            f'train_cfg.val_interval={max_iters + 1}', 'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=2', 'default_hooks.logger.interval=1']


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    """A directory holding data/toy_coco, where the config's relative data_root points."""
    root = tmp_path_factory.mktemp('dino_e2e')
    generate_coco(root / 'data' / 'toy_coco', num_train=4, num_val=2,
                  image_size=((96, 128), (96, 128)), max_objects=3, seed=0)
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope='module')
def trained(workspace) -> Path:
    """Work directory of a run of two iterations from scratch, resumed for a third."""
    work_dir = workspace / 'train'
    output = output_of(run_tool('tools/train.py', CONFIG, '--work-dir', work_dir, *short_run(2),
                                cwd=workspace))
    assert 'Iter(train) [2/2]' in output
    output = output_of(run_tool('tools/train.py', CONFIG, '--work-dir', work_dir, '--resume',
                                *short_run(3), cwd=workspace))
    assert 'resumed epoch: 0, iter: 2' in output and 'Iter(train) [3/3]' in output
    assert 'Iter(train) [1/3]' not in output
    return work_dir


def test_trains_resumes_and_evaluates(workspace, trained):
    work_dir = workspace / 'test'
    output = output_of(run_tool('tools/test.py', CONFIG, trained / 'iter_3.pth', '--work-dir',
                                work_dir, cwd=workspace))
    assert 'coco/bbox_mAP' in output
    metrics = last_test_metrics(work_dir)
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0 and 'coco/segm_mAP' not in metrics


def test_fine_tunes_from_the_official_checkpoint_layout(workspace):
    """``load_from`` an official-format DINO checkpoint of this architecture: everything loads but
    the 80-class classifiers, which the 5 toy classes replace, and it says so."""
    official = reference.save_official_checkpoint(
        reference.official_state_dict(reference.load_fixture('detector')),
        str(workspace / 'official_dino.pth'))
    output = output_of(run_tool('tools/train.py', CONFIG, '--work-dir', workspace / 'fine_tune',
                                *short_run(1), f'load_from={official}', cwd=workspace))
    assert f'Converted the official DINO checkpoint {official}' in output
    assert 'classifies the 80 COCO categories and this model 5 classes' in output
    assert 'Iter(train) [1/1]' in output
