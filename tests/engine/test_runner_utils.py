import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as torch_dist
from mmengine.config import Config

from mmfastervit.checkpoint.atomic_save import STALE_AFTER_SECONDS
from mmfastervit.engine import runner_utils
from tests.conftest import checkout_environment, free_port


def det_config(**extra) -> Config:
    return Config(
        dict(
            default_scope='mmdet',
            model=dict(
                type='CascadeRCNN',
                backbone=dict(type='FasterViT', norm_cfg=dict(type='SyncBN')),
                roi_head=dict(bbox_head=[
                    dict(type='ConvFCBBoxHead', norm_cfg=dict(type='SyncBN', requires_grad=True)),
                    dict(type='ConvFCBBoxHead', norm_cfg=dict(type='BN')),
                ])),
            default_hooks=dict(visualization=dict(type='DetVisualizationHook')),
            visualizer=dict(type='DetLocalVisualizer'),
            test_dataloader=dict(
                dataset=dict(pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
                    dict(type='PackDetInputs'),
                ])),
            **extra))


def seg_config(**extra) -> Config:
    return Config(
        dict(
            default_scope='mmseg',
            model=dict(type='EncoderDecoder', decode_head=dict(norm_cfg=dict(type='SyncBN'))),
            default_hooks=dict(visualization=dict(type='SegVisualizationHook')),
            visualizer=dict(type='SegLocalVisualizer'),
            **extra))


def test_task_scope():
    assert runner_utils.task_scope(det_config()) == 'mmdet'
    assert runner_utils.task_scope(seg_config()) == 'mmseg'
    with pytest.raises(ValueError, match='default_scope'):
        runner_utils.task_scope(Config(dict(default_scope='mmpretrain')))


def test_adapt_to_cpu_single_process():
    cfg = det_config(launcher='none')
    runner_utils.adapt_to_cpu(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert [head.norm_cfg.type for head in cfg.model.roi_head.bbox_head] == ['BN', 'BN']
    assert cfg.model.roi_head.bbox_head[0].norm_cfg.requires_grad is True
    assert 'model_wrapper_cfg' not in cfg


def test_adapt_to_cpu_distributed_wrapper_has_no_device_ids():
    cfg = det_config(launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=60)))
    runner_utils.adapt_to_cpu(cfg)
    assert cfg.env_cfg.dist_cfg.to_dict() == dict(backend='gloo', timeout=60)
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert cfg.model_wrapper_cfg.device_ids is None

    cfg = det_config(
        launcher='pytorch',
        model_wrapper_cfg=dict(type='MMDistributedDataParallel', find_unused_parameters=True))
    runner_utils.adapt_to_cpu(cfg)
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.find_unused_parameters is True


def test_load_config_applies_the_command_line(tmp_path, monkeypatch):
    config = tmp_path / 'my_config.py'
    config.write_text("default_scope = 'mmseg'\nmodel = dict(type='EncoderDecoder')\n"
                      "env_cfg = dict(dist_cfg=dict(backend='nccl'))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner_utils.torch.cuda, 'is_available', lambda: False)
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    runner_utils.add_common_args(parser)

    cfg = runner_utils.load_config(parser.parse_args([str(config), '--cfg-options', 'a=1']))
    assert cfg.a == 1
    assert cfg.launcher == 'none'
    assert Path(cfg.work_dir) == Path('work_dirs/my_config')
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'

    cfg = runner_utils.load_config(
        parser.parse_args([str(config), '--work-dir', 'elsewhere', '--launcher', 'pytorch']))
    assert cfg.work_dir == 'elsewhere'
    assert cfg.launcher == 'pytorch'


def test_visualization_of_detection_goes_to_the_hook():
    cfg = det_config()
    runner_utils.enable_visualization(cfg, show=False, show_dir='vis', wait_time=2)
    hook = cfg.default_hooks.visualization
    assert hook.draw is True
    assert hook.test_out_dir == 'vis'
    assert 'show' not in hook
    assert 'save_dir' not in cfg.visualizer


def test_visualization_of_segmentation_goes_to_the_visualizer():
    cfg = seg_config()
    runner_utils.enable_visualization(cfg, show=True, show_dir='vis', wait_time=0.5)
    hook = cfg.default_hooks.visualization
    assert hook.draw is True and hook.show is True and hook.wait_time == 0.5
    assert cfg.visualizer.save_dir == 'vis'
    assert 'test_out_dir' not in hook


def test_visualization_needs_the_hook():
    cfg = seg_config()
    del cfg.default_hooks['visualization']
    with pytest.raises(RuntimeError, match='visualization'):
        runner_utils.enable_visualization(cfg, show=False, show_dir='vis', wait_time=2)


def test_detection_tta_defaults_to_flip():
    cfg = det_config()
    model = cfg.model.to_dict()
    with pytest.warns(UserWarning):
        runner_utils.enable_tta(cfg)
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.module.to_dict() == model
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert [step.type for step in pipeline] == ['LoadImageFromFile', 'Resize', 'TestTimeAug']
    flips = pipeline[-1].transforms[0]
    assert sorted(flip['prob'] for flip in flips) == [0., 1.]


def test_segmentation_tta_uses_the_config():
    cfg = seg_config(
        tta_model=dict(type='SegTTAModel'),
        tta_pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='TestTimeAug', transforms=[])],
        test_dataloader=dict(dataset=dict(pipeline=[])))
    runner_utils.enable_tta(cfg)
    assert cfg.model.type == 'SegTTAModel'
    assert cfg.model.module.type == 'EncoderDecoder'
    assert cfg.test_dataloader.dataset.pipeline[-1].type == 'TestTimeAug'

    with pytest.raises(RuntimeError, match='tta_pipeline'):
        runner_utils.enable_tta(seg_config(tta_model=dict(type='SegTTAModel')))


def test_non_pytorch_launcher_on_cpu_is_refused(monkeypatch):
    monkeypatch.setattr(runner_utils.torch.cuda, 'is_available', lambda: False)
    cfg = det_config(launcher='slurm', env_cfg=dict(dist_cfg=dict(backend='gloo')))
    with pytest.raises(RuntimeError, match='torchrun'):
        runner_utils.build_runner(cfg)


def test_close_process_group_destroys_the_group():
    torch_dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
                                  world_size=1)
    assert torch_dist.is_initialized()
    runner_utils.close_process_group()
    assert not torch_dist.is_initialized()
    runner_utils.close_process_group()  # nothing to close: a no-op


# One process of a two-process group: checks three configs as build_runner does (of an ImageNet
# dataset, only the data root is checked), and prints which ones this process checked itself and
# what each raised.
CHECKING_PROCESS = '''
import json, sys
from mmengine.config import Config
from mmengine.dist import get_rank
from mmfastervit.engine import runner_utils

calls, outcomes = [], []
check_config = runner_utils.check_config

def counted_check(cfg, splits):
    calls.append(cfg.name)
    if cfg.name == 'crashing':
        raise OSError('the annotation file went away')
    check_config(cfg, splits)

runner_utils.check_config = counted_check

def config(name, data_root):
    return Config(dict(
        name=name, default_scope='mmdet', launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        train_dataloader=dict(dataset=dict(type='ImageNet', data_root=data_root))))

for cfg, check in ((config('missing', sys.argv[1] + '/nothing'), runner_utils.build_runner),
                   (config('crashing', sys.argv[1]), runner_utils.check_config_once),
                   (config('valid', sys.argv[1]), runner_utils.check_config_once)):
    try:
        check(cfg, ('train', ))
        outcomes.append(None)
    except Exception as error:
        outcomes.append(f'{type(error).__name__}: {error}')
print(json.dumps(dict(rank=get_rank(), calls=calls, outcomes=outcomes)))
'''


@pytest.mark.slow
def test_a_distributed_run_checks_the_config_on_the_main_process_only(tmp_path):
    env = checkout_environment(
        dict(os.environ, MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()), WORLD_SIZE='2'))
    processes = [
        subprocess.Popen([sys.executable, '-c', CHECKING_PROCESS, str(tmp_path)],
                         env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    try:
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for stdout, stderr in outputs:
        assert stdout, stderr[-3000:]
    main, other = (json.loads(stdout) for stdout, _ in outputs)
    assert main['calls'] == ['missing', 'crashing', 'valid']
    assert other['calls'] == []
    missing = f'ConfigCheckError: train data_root {tmp_path}/nothing does not exist'
    assert main['outcomes'] == [missing, 'OSError: the annotation file went away', None]
    assert other['outcomes'] == [
        missing, 'RuntimeError: checking the config on the main process failed: OSError: the '
        'annotation file went away', None
    ]


def test_resuming_removes_stale_temporaries_where_the_run_saves(tmp_path):
    work_dir, elsewhere, other = tmp_path / 'work', tmp_path / 'elsewhere', tmp_path / 'other'
    stale = [work_dir / '.iter_6.pth.0123456789abcdef.mmfastervit-tmp',
             elsewhere / '.iter_4.pth.0123456789abcdef.mmfastervit-tmp']
    kept = [work_dir / '.iter_8.pth.fedcba9876543210.mmfastervit-tmp',  # being written
            work_dir / 'notes.tmp', other / '.iter_2.pth.0123456789abcdef.mmfastervit-tmp']
    for path in stale + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b'partial')
        if path != kept[0]:
            old = time.time() - 2 * STALE_AFTER_SECONDS
            os.utime(path, (old, old))
    (work_dir / 'last_checkpoint').write_text(str(elsewhere / 'iter_4.pth'))

    runner_utils.remove_interrupted_saves(Config(dict(work_dir=str(work_dir), load_from=None)))
    assert [path.exists() for path in stale + kept] == [False, False, True, True, True]
