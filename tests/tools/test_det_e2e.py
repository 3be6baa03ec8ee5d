"""tools/train.py, tools/test.py and tools/dist_train.sh end to end on a generated toy COCO dataset,
with the toy Cascade Mask R-CNN config cut down to two iterations."""
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmfastervit.datasets import generate_coco

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs/det/toy/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py'
NUM_VAL = 3


def tiny_run(max_iters: int) -> list:
    """Options of a run of ``max_iters`` iterations, validated and saved at the end."""
    return [
        '--cfg-options', f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
        f'default_hooks.checkpoint.interval={max_iters}', 'default_hooks.logger.interval=1'
    ]


def run(cwd: Path, *command, env=None) -> str:
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    """A directory holding data/toy_coco, where the config's relative data_root points; removed
    afterwards, as every checkpoint takes about 1 GB."""
    root = tmp_path_factory.mktemp('det_e2e')
    generate_coco(root / 'data' / 'toy_coco', num_train=8, num_val=NUM_VAL,
                  image_size=((96, 128), (96, 128)), max_objects=3, seed=0)
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope='module')
def trained(workspace) -> Path:
    """Work directory of a two-iteration training run."""
    work_dir = workspace / 'train'
    output = run(workspace, sys.executable, REPO / 'tools/train.py', CONFIG, '--work-dir', work_dir,
                 *tiny_run(2))
    assert 'Iter(train) [2/2]' in output
    return work_dir


def test_train_saves_checkpoints_and_validates(trained):
    assert (trained / 'iter_2.pth').is_file()
    assert (trained / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    (log, ) = trained.glob('*/*.log')
    assert 'coco/bbox_mAP' in log.read_text()


def test_test_tool_evaluates_dumps_and_draws(workspace, trained):
    work_dir = workspace / 'test'
    out_file = work_dir / 'results.pkl'
    output = run(workspace, sys.executable, REPO / 'tools/test.py', CONFIG, trained / 'iter_2.pth',
                 '--work-dir', work_dir, '--out', out_file, '--show-dir', 'painted')
    for metric in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert metric in output

    with open(out_file, 'rb') as file:
        results = pickle.load(file)
    assert len(results) == NUM_VAL
    assert {'pred_instances', 'img_path'} <= set(results[0])
    assert {'bboxes', 'scores', 'labels', 'masks'} <= set(results[0]['pred_instances'])

    (painted_dir, ) = work_dir.glob('*/painted')
    assert len(list(painted_dir.glob('*.jpg'))) == NUM_VAL


def test_resume_continues_from_the_last_checkpoint(workspace, trained):
    work_dir = workspace / 'resumed'
    work_dir.mkdir()
    # What a run stopped after iteration 2 leaves behind, for --resume to find.
    (work_dir / 'last_checkpoint').write_text(str(trained / 'iter_2.pth'))
    output = run(workspace, sys.executable, REPO / 'tools/train.py', CONFIG, '--work-dir', work_dir,
                 '--resume', *tiny_run(3))
    assert 'Auto resumed from the latest checkpoint' in output
    assert 'Iter(train) [3/3]' in output
    assert 'Iter(train) [1/3]' not in output
    assert (work_dir / 'iter_3.pth').is_file()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_process_distributed_training_on_cpu(workspace):
    work_dir = workspace / 'dist'
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()))
    output = run(workspace, 'bash', REPO / 'tools/dist_train.sh', CONFIG, 2, '--work-dir', work_dir,
                 *tiny_run(2), env=env)
    assert 'Distributed launcher: pytorch' in output
    assert 'GPU number: 2' in output
    assert 'Iter(train) [2/2]' in output
    assert (work_dir / 'iter_2.pth').is_file()


def test_distributed_run_with_a_dead_worker_fails_in_bounded_time(workspace):
    """Rank 1 is killed after its first iteration while rank 0 waits for it in the gradient
    all-reduce: the launcher must stop rank 0 and exit non-zero, naming the failed rank."""
    config = workspace / 'dying_worker.py'
    config.write_text(f"_base_ = '{CONFIG}'\n"
                      "custom_imports = dict(imports=['mmfastervit', 'dying_worker_hook'], "
                      "allow_failed_imports=False)\n"
                      "custom_hooks = [dict(type='KillRankHook', rank=1)]\n")
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent),
                                           os.environ.get('PYTHONPATH', '')]))
    start = time.monotonic()
    result = subprocess.run(['bash', REPO / 'tools/dist_train.sh', config, '2', '--work-dir',
                             workspace / 'dying', *tiny_run(4)],
                            cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-5000:]
    assert 'ChildFailedError' in output and 'rank' in output and 'Signal 9 (SIGKILL)' in output, \
        output[-5000:]
    assert elapsed < 240, f'the launcher took {elapsed:.0f} s to give up'


def test_mmdet_train_tool_finds_the_plugin_through_custom_imports(workspace):
    """The configs import mmfastervit themselves, so MMDetection's own tools run them too."""
    import mmdet
    mmdet_train = Path(mmdet.__file__).parent / '.mim' / 'tools' / 'train.py'
    work_dir = workspace / 'mmdet_tool'
    output = run(workspace, sys.executable, mmdet_train, CONFIG, '--work-dir', work_dir,
                 *tiny_run(1))
    assert 'Iter(train) [1/1]' in output
    assert (work_dir / 'iter_1.pth').is_file()
