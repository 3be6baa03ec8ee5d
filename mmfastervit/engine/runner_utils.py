"""What ``tools/train.py`` and ``tools/test.py`` share: loading a config, running it on the CPU,
building the runner, and the parts that differ between MMDetection and MMSegmentation configs
(chosen from the config's ``default_scope``).
"""
import argparse
import os
import os.path as osp
import time
import warnings
from copy import deepcopy
from typing import Any, Optional, Sequence

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.dist import broadcast_object_list, init_dist, is_distributed, is_main_process
from mmengine.model import is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS, RUNNERS
from mmengine.runner import Runner, find_latest_checkpoint
from mmengine.utils.dl_utils import set_multi_processing
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint.atomic_save import remove_stale_temporaries
from .config_checks import ConfigCheckError, check_config
from .cpu_limit import match_threads_to_cpu_limit

# ImageNet classification configs use MMEngine's scope: their modules are in the root registries.
TASK_SCOPES = ('mmdet', 'mmseg', 'mmengine')
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
# Time for the communication backend's worker threads to release their last tensors at the end
# of a distributed run (see close_process_group).
WORKER_DRAIN_SECONDS = 0.5


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options that both tools take, after their positional arguments."""
    parser.add_argument('--work-dir', help='directory for logs, checkpoints and metrics')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as key=value pairs merged into the config '
        '(lists as key="[a,b]" or key=a,b; no spaces)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """Read ``args.config`` and apply the command line options every tool has.

    The work directory is, by priority, ``--work-dir``, the config's ``work_dir``, then
    ``work_dirs/<config name>``. On a machine without CUDA the config is adapted with
    :func:`adapt_to_cpu`.
    """
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    task_scope(cfg)
    if not torch.cuda.is_available():
        adapt_to_cpu(cfg)
    return cfg


def task_scope(cfg: Config) -> str:
    """The OpenMMLab codebase a config is written for: ``'mmdet'``, ``'mmseg'`` or, for
    classification, ``'mmengine'``."""
    scope = cfg.get('default_scope')
    if scope not in TASK_SCOPES:
        raise ValueError(f'default_scope must be one of {TASK_SCOPES}, got {scope!r}')
    return scope


def _replace_sync_bn(node: Any) -> None:
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            _replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _replace_sync_bn(value)


def adapt_to_cpu(cfg: Config) -> None:
    """Make a config written for GPUs run on the CPU, in place.

    Distributed runs use the ``gloo`` backend; ``SyncBN`` becomes ``BN`` because torch only
    synchronises batch statistics across GPU processes (MMEngine reverts it itself, but only for
    non-distributed runs); distributed model wrappers get no ``device_ids``, which
    ``DistributedDataParallel`` rejects for CPU modules.
    """
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    _replace_sync_bn(cfg.model)
    if cfg.get('launcher', 'none') == 'none':
        return
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        # The wrapper MMEngine builds when the config has none, minus ``device_ids``.
        cfg.model_wrapper_cfg = ConfigDict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
            device_ids=None)
    elif issubclass(MODEL_WRAPPERS.get(wrapper.get('type', 'MMDistributedDataParallel')),
                    DistributedDataParallel):
        wrapper.device_ids = None


def init_process_group(cfg: Config) -> None:
    """Create the process group of a distributed run, as the Runner would (which then skips it).

    Without CUDA, a ``pytorch``-launched group is created with the configured backend (``gloo``
    after :func:`adapt_to_cpu`): MMEngine's own initialisation selects a CUDA device first, which
    fails on the CPU.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch_dist.is_initialized():
        return
    env_cfg = cfg.get('env_cfg', {})
    dist_cfg = dict(env_cfg.get('dist_cfg', {}))
    if not torch.cuda.is_available():
        if launcher != 'pytorch':
            raise RuntimeError(f'the {launcher!r} launcher needs CUDA; on the CPU launch with '
                               'torchrun and --launcher pytorch')
        torch_dist.init_process_group(backend=dist_cfg['backend'])
        return
    # The multiprocessing settings first, as the Runner orders them.
    set_multi_processing(**env_cfg.get('mp_cfg', {}), distributed=True)
    init_dist(launcher, **dist_cfg)


def check_config_once(cfg: Config, splits: Sequence[str]) -> None:
    """:func:`check_config` on the main process only; the others wait for its verdict.

    Every process of a distributed run would otherwise load the annotation files and list the
    image folders itself. A failed check raises on every process: the main process's own
    exception on it, one with the same message on the others (a :class:`ConfigCheckError` for a
    setting the check found wrong, a ``RuntimeError`` for a check that failed).
    """
    if not is_distributed():
        check_config(cfg, splits)
        return
    failure = [None]
    if is_main_process():
        try:
            check_config(cfg, splits)
        except Exception as error:
            failure = [(type(error).__name__, str(error))]
            broadcast_object_list(failure)
            raise
    broadcast_object_list(failure)
    if failure[0] is not None:
        kind, message = failure[0]
        if kind == ConfigCheckError.__name__:
            raise ConfigCheckError(message)
        raise RuntimeError(f'checking the config on the main process failed: {kind}: {message}')


def build_runner(cfg: Config, check_splits: Sequence[str] = ()) -> Runner:
    """Build the runner ``cfg`` asks for (``runner_type``, else MMEngine's ``Runner``).

    The config is checked first (:func:`check_config_once`): neck/head channels against the
    backbone variant, and the data files of ``check_splits`` (e.g. ``('train', 'val')``), so that
    a wrong setting fails in seconds with a message naming it. A distributed run creates its
    process group before, so that the check runs on one process. Torch's CPU threads are first
    kept within the process's cgroup CPU limit (:func:`match_threads_to_cpu_limit`).
    """
    match_threads_to_cpu_limit()
    init_process_group(cfg)
    check_config_once(cfg, check_splits)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def remove_interrupted_saves(cfg: Config) -> None:
    """On the main process of a run about to resume: remove the temporaries that checkpoint saves
    killed mid-write left in the work directory and beside the checkpoint it resumes from."""
    if not is_main_process():
        return
    checkpoint = cfg.get('load_from') or find_latest_checkpoint(cfg.work_dir)
    directories = {cfg.work_dir, osp.dirname(checkpoint) if checkpoint else cfg.work_dir}
    for directory in directories:
        if '://' not in directory:
            remove_stale_temporaries(directory)


def close_process_group() -> None:
    """End a distributed run: wait for every rank, destroy the process group, then pause briefly.

    A gloo worker thread frees the tensors of a finished collective after the caller has moved
    on. If it frees one that has a Python object once the interpreter is shutting down, it cannot
    take the GIL and the process aborts ("terminate called without an active exception",
    SIGABRT), so the launcher reports a run that succeeded as failed. ``destroy_process_group``
    does not join those threads (other references keep the group alive), so the pause, with the
    GIL released, lets them finish while the interpreter is still alive.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
        time.sleep(WORKER_DRAIN_SECONDS)


def evaluate_checkpoint(cfg: Config, checkpoint: Optional[str]) -> dict:
    """Test-set metrics of the config's model with ``checkpoint`` loaded, or, when it is None, as
    initialised at the start of training."""
    cfg.load_from = checkpoint
    runner = build_runner(cfg, check_splits=('test', ))
    if checkpoint is None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.init_weights()
    return runner.test()


def enable_visualization(cfg: Config, show: bool, show_dir: str, wait_time: float) -> None:
    """Switch the config's visualization hook on for testing.

    Detection hooks write to ``show_dir`` inside the run's timestamped work directory;
    segmentation ones through the visualizer, whose ``save_dir`` becomes ``show_dir``.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise RuntimeError("default_hooks has no 'visualization' hook to draw predictions with")
    hook.draw = True
    if show:
        hook.show = True
        hook.wait_time = wait_time
    if show_dir:
        if task_scope(cfg) == 'mmdet':
            hook.test_out_dir = show_dir
        else:
            cfg.visualizer.save_dir = show_dir


def _default_det_tta(cfg: Config) -> None:
    """Horizontal-flip test-time augmentation, as MMDetection's test tool sets it up."""
    if 'tta_model' not in cfg:
        warnings.warn('the config has no tta_model: using flip TTA with NMS at IoU 0.5')
        cfg.tta_model = ConfigDict(
            type='DetTTAModel',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('the config has no tta_pipeline: flipping the test pipeline')
        dataset = cfg.test_dataloader.dataset
        while 'dataset' in dataset:
            dataset = dataset.dataset
        cfg.tta_pipeline = deepcopy(dataset.pipeline)
        cfg.tta_pipeline[-1] = ConfigDict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.),
                         dict(type='RandomFlip', prob=0.)],
                        [dict(type='PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                         'scale_factor', 'flip', 'flip_direction'))]])


def enable_tta(cfg: Config) -> None:
    """Wrap the model in the config's ``tta_model`` and test with its ``tta_pipeline``.

    Detection configs without them get MMDetection's flip default; segmentation configs must
    define both (MMSegmentation's base configs do).
    """
    if task_scope(cfg) == 'mmdet':
        _default_det_tta(cfg)
    elif 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise RuntimeError('--tta needs tta_model and tta_pipeline in the config')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def add_dump_metric(runner: Runner, out_file: str) -> None:
    """Also write the raw predictions of the test run to the pickle file ``out_file``."""
    if task_scope(runner.cfg) == 'mmdet':
        # Encodes instance masks as RLE, as the COCO tools expect.
        from mmdet.evaluation import DumpDetResults as DumpMetric
    else:
        from mmengine.evaluator import DumpResults as DumpMetric
    runner.test_evaluator.metrics.append(DumpMetric(out_file_path=out_file))
