"""tools/train.py, tools/test.py and tools/dist_train.sh end to end on a generated toy COCO dataset,
with the toy Cascade Mask R-CNN config cut down to a few iterations: training, testing, and two
processes killed and resumed."""
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmfastervit.checkpoint import safe_torch_load
from mmfastervit.datasets import generate_coco
from tests.conftest import REPO, free_port, output_of, run_tool

pytestmark = pytest.mark.slow

CONFIG = REPO / 'configs/det/toy/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py'
# The config's relative data_root (the demo's upright shapes), under each test's working directory.
DATA_ROOT = Config.fromfile(CONFIG).data_root.rstrip('/')
NUM_VAL = 3
# Where the hook that kills processes (imported by the configs of the tests that use it) is.
KILL_HOOK_DIR = Path(__file__).parent


def tiny_run(max_iters: int) -> list:
    """Options of a run of ``max_iters`` iterations, validated and saved at the end."""
    return [
        '--cfg-options', f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
        f'default_hooks.checkpoint.interval={max_iters}', 'default_hooks.logger.interval=1'
    ]


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    """A directory holding the toy dataset where the config's relative data_root points; removed
    afterwards, as every checkpoint takes about 1 GB."""
    root = tmp_path_factory.mktemp('det_e2e')
    generate_coco(root / DATA_ROOT, num_train=8, num_val=NUM_VAL,
                  image_size=((96, 128), (96, 128)), max_objects=3, upright=True, seed=0)
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope='module')
def trained(workspace) -> Path:
    """Work directory of a two-iteration training run."""
    work_dir = workspace / 'train'
    output = output_of(
        run_tool('tools/train.py', CONFIG, '--work-dir', work_dir, *tiny_run(2), cwd=workspace))
    assert 'Iter(train) [2/2]' in output
    return work_dir


def test_training_beats_the_untrained_detector(tmp_path):
    """A bounded run that must learn: 40 iterations on two generated images, both in every
    step and 20 of warm-up (the demo's one image a step and 40 of warm-up would leave so short a
    run half as much to learn from), then tools/analysis/det_learning_check.py on those same images
    (what so short a run can show is that the detector fits what it saw), against the same model
    untrained. With this seed the box mAP was 0.00 untrained and 0.62 after 40 iterations."""
    generate_coco(tmp_path / DATA_ROOT, num_train=2, num_val=1, image_size=128, max_objects=3,
                  background='plain', upright=True, seed=1)
    work_dir = tmp_path / 'run'
    output_of(
        run_tool('tools/train.py', CONFIG, '--work-dir', work_dir, *tiny_run(40),
                 'train_dataloader.batch_size=2', 'param_scheduler.0.end=20', 'val_cfg=None',
                 'val_dataloader=None', 'val_evaluator=None', 'randomness.seed=0', cwd=tmp_path))
    on_training_images = [
        'test_dataloader.dataset.ann_file=annotations/instances_train.json',
        'test_dataloader.dataset.data_prefix.img=train/',
        f'test_evaluator.ann_file={DATA_ROOT}/annotations/instances_train.json',
    ]
    check = run_tool('tools/analysis/det_learning_check.py', CONFIG, work_dir / 'iter_40.pth',
                     '--min-gain', '0.1', '--work-dir', tmp_path / 'check', '--cfg-options',
                     *on_training_images, cwd=tmp_path)
    assert 'OK: the detector learned' in output_of(check)


def test_train_saves_checkpoints_and_validates(trained):
    assert (trained / 'iter_2.pth').is_file()
    assert (trained / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    (log, ) = trained.glob('*/*.log')
    assert 'coco/bbox_mAP' in log.read_text()


def test_test_tool_evaluates_dumps_and_draws(workspace, trained):
    work_dir = workspace / 'test'
    out_file = work_dir / 'results.pkl'
    output = output_of(
        run_tool('tools/test.py', CONFIG, trained / 'iter_2.pth', '--work-dir', work_dir, '--out',
                 out_file, '--show-dir', 'painted', cwd=workspace))
    for metric in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert metric in output

    with open(out_file, 'rb') as file:
        results = pickle.load(file)
    assert len(results) == NUM_VAL
    assert {'pred_instances', 'img_path'} <= set(results[0])
    assert {'bboxes', 'scores', 'labels', 'masks'} <= set(results[0]['pred_instances'])

    (painted_dir, ) = work_dir.glob('*/painted')
    assert len(list(painted_dir.glob('*.jpg'))) == NUM_VAL


def dist_train(workspace: Path, config: Path, work_dir: Path, *options, kill_hook: bool = False):
    """tools/dist_train.sh with two processes; ``kill_hook`` makes :mod:`dying_worker_hook`
    importable."""
    env = dict(os.environ, PORT=str(free_port()))
    if kill_hook:
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(KILL_HOOK_DIR),
                                                          env.get('PYTHONPATH')]))
    return run_tool('tools/dist_train.sh', config, 2, '--work-dir', work_dir, *options,
                    cwd=workspace, env=env)


def config_with_kill_hook(workspace: Path, name: str, **kill_args) -> Path:
    config = workspace / f'{name}.py'
    config.write_text(f"_base_ = '{CONFIG}'\n"
                      "custom_imports = dict(imports=_base_.custom_imports.imports + "
                      "['dying_worker_hook'])\n"
                      "custom_hooks = [dict(type='ResumeRandomStateHook'), "
                      f"dict(type='KillRanksHook', **{kill_args!r})]\n")
    return config


# Three iterations without validation, reproducible, saved after the second and at the end (with
# two processes of batch 2 on 8 images, the third starts a new epoch).
EXACT_RUN = [
    '--cfg-options', 'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=2',
    'default_hooks.checkpoint.max_keep_ckpts=-1', 'default_hooks.logger.interval=1',
    'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None', 'randomness.seed=0',
    'randomness.deterministic=True'
]


def meta(checkpoint: Path) -> dict:
    return safe_torch_load(checkpoint)['meta']


@pytest.fixture(scope='module')
def two_processes(workspace) -> Path:
    """Work directory of a run of two processes, not interrupted."""
    work_dir = workspace / 'dist'
    output_of(dist_train(workspace, CONFIG, work_dir, *EXACT_RUN))
    return work_dir


@pytest.fixture(scope='module')
def killed(workspace) -> Path:
    """Work directory of the same run, both processes killed once iteration 2 is saved."""
    config = config_with_kill_hook(workspace, 'killed_after_2', ranks=[0, 1], after_iter=2)
    work_dir = workspace / 'killed'
    result = dist_train(workspace, config, work_dir, *EXACT_RUN, kill_hook=True)
    assert result.returncode != 0, (result.stdout + result.stderr)[-5000:]
    assert (work_dir / 'iter_2.pth').is_file() and not (work_dir / 'iter_3.pth').exists()
    return work_dir


def test_two_process_distributed_training_on_cpu(two_processes):
    # Each process's random state is in the checkpoint: two processes trained.
    assert meta(two_processes / 'iter_3.pth')['iter'] == 3
    states = meta(two_processes / 'iter_3.pth')['torch_rng_state']
    assert len(states) == 2


def test_killed_processes_resume_to_the_same_weights(workspace, two_processes, killed):
    output = output_of(dist_train(workspace, CONFIG, killed, *EXACT_RUN, '--resume'))
    expected = safe_torch_load(two_processes / 'iter_3.pth')['state_dict']
    resumed = safe_torch_load(killed / 'iter_3.pth')['state_dict']
    assert expected.keys() == resumed.keys()
    differing = [key for key in expected if not torch.equal(expected[key], resumed[key])]
    assert not differing, f'{len(differing)} of {len(expected)} differ: {differing[:5]}'
    assert 'Restored the torch random state of 2 process(es)' in output


def test_resuming_with_another_number_of_processes_says_so(workspace, killed):
    work_dir = workspace / 'one_process'
    output = output_of(
        run_tool('tools/train.py', CONFIG, '--work-dir', work_dir, '--resume',
                 killed / 'iter_2.pth', *EXACT_RUN, cwd=workspace))
    assert ('The checkpoint holds the torch random state of 2 process(es) and this run has 1'
            in output)
    assert meta(work_dir / 'iter_3.pth')['iter'] == 3


def test_distributed_run_with_a_dead_worker_fails_in_bounded_time(workspace):
    """Rank 1 is killed after its first iteration while rank 0 waits for it in the gradient
    all-reduce: the launcher must stop rank 0 and exit non-zero, naming the failed rank."""
    config = config_with_kill_hook(workspace, 'dying_worker', ranks=[1], after_iter=1)
    start = time.monotonic()
    result = dist_train(workspace, config, workspace / 'dying', *tiny_run(4), kill_hook=True)
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
    output = output_of(
        run_tool(mmdet_train, CONFIG, '--work-dir', work_dir, *tiny_run(1), cwd=workspace))
    assert 'Iter(train) [1/1]' in output
    assert (work_dir / 'iter_1.pth').is_file()
