"""Interruptions lose nothing: a training run killed with SIGKILL and restarted with --resume ends
with exactly the weights of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmfastervit.datasets import generate_coco

TOY_DET = 'configs/det/toy/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py'
MAX_ITERS = 6


def train_command(config, data_root, work_dir, *extra):
    options = [
        f'train_dataloader.dataset.data_root={data_root}/', 'train_dataloader.batch_size=1',
        f'train_cfg.max_iters={MAX_ITERS}', 'default_hooks.checkpoint.interval=2',
        'default_hooks.checkpoint.max_keep_ckpts=10', 'default_hooks.logger.interval=1',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        'randomness.seed=0', 'randomness.deterministic=True',
    ]
    return [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir),
            '--cfg-options', *options, *extra]


def final_weights(work_dir):
    return torch.load(os.path.join(work_dir, f'iter_{MAX_ITERS}.pth'),
                      weights_only=False)['state_dict']


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    data_root = tmp_path / 'coco'
    generate_coco(data_root, num_train=8, num_val=1, image_size=((160, 200), (160, 200)))
    config = TOY_DET

    uninterrupted = tmp_path / 'uninterrupted'
    result = subprocess.run(train_command(config, data_root, uninterrupted), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    interrupted = tmp_path / 'interrupted'
    process = subprocess.Popen(train_command(config, data_root, interrupted), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    last = interrupted / 'last_checkpoint'
    deadline = time.time() + 300
    while not (last.exists() and 'iter_4' in last.read_text()):
        assert process.poll() is None, 'training ended before it could be interrupted'
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (interrupted / f'iter_{MAX_ITERS}.pth').exists()

    result = subprocess.run(train_command(config, data_root, interrupted, '--resume'),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'resumed epoch: 0, iter: 4' in log

    expected, resumed = final_weights(uninterrupted), final_weights(interrupted)
    assert expected.keys() == resumed.keys()
    differing = [k for k in expected if not torch.equal(expected[k], resumed[k])]
    assert not differing, differing[:10]
