"""Throughput measurement: FasterViT backbones (optionally beside the official implementation or
mmdet's Swin-T) or whole detectors/segmentors from a config (optionally beside the same model with
mmdet's Swin-T as its backbone), in inference or for a training step.

Every measurement: ``warmup`` untimed calls, then the median of ``repeats`` timed calls (the device
synchronised around each on GPU). When several implementations are compared they are timed
alternately, call by call, on the same input, so that a change in machine load affects all of them
alike. Inference runs in eval mode under ``torch.inference_mode``; a training step is the forward
pass in train mode, a loss and its backward pass (backbones: the mean of every returned feature;
detectors/segmentors: their own losses on a fixed batch with ground truth, through their data
preprocessor).
"""
import contextlib
import csv
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

PRECISIONS = ('fp32', 'bf16', 'fp16')
MODES = ('infer', 'train')
SWIN_T = dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
              num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4, qkv_bias=True, qk_scale=None,
              drop_rate=0., attn_drop_rate=0., drop_path_rate=0.2, patch_norm=True,
              out_indices=(0, 1, 2, 3), with_cp=False, convert_weights=False)
SWIN_T_CHANNELS = [96, 192, 384, 768]


@dataclass
class Result:
    model: str
    impl: str
    mode: str
    height: int
    width: int
    batch: int
    precision: str
    compiled: bool
    ms_per_batch: float
    images_per_s: float
    peak_mb: Optional[float] = None  # peak memory of a training step above the model's own


def parse_size(text: str) -> Tuple[int, int]:
    height, _, width = text.lower().partition('x')
    return int(height), int(width or height)


def machine_description(device: str = 'cpu') -> str:
    """The processor the figures come from: model, cores (and the cgroup CPU limit where one is
    set), threads and the vector instructions that decide which kernels run (AVX2, AVX-512,
    AVX512_BF16, AMX)."""
    if device.startswith('cuda'):
        return f'{torch.cuda.get_device_name(device)}, torch {torch.__version__}'
    from mmfastervit.engine.cpu_limit import cgroup_cpu_limit
    from mmfastervit.models.kernels import cpu_flags
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            fields = dict(line.split(':', 1) for line in cpuinfo.read().split('\n\n')[0]
                          .splitlines() if ':' in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        model = fields.get('model name', model)
        if 'cpu family' in fields:
            model += f' (family {fields["cpu family"]}, model {fields.get("model", "?")})'
    except OSError:
        pass
    flags = cpu_flags()
    isa = [name for name, flag in (('AVX2', 'avx2'), ('AVX-512', 'avx512f'),
                                   ('AVX512_BF16', 'avx512_bf16'), ('AMX', 'amx_tile'))
           if flag in flags]
    limit = cgroup_cpu_limit()
    cores = f'{os.cpu_count()} cores' + (f' (cgroup limit: {limit:g})' if limit else '')
    return (f'{model}, {cores}, {torch.get_num_threads()} threads, '
            f'{" ".join(isa) or "no AVX2"}; torch {torch.__version__}')


def autocast(device: str, precision: str):
    if precision == 'fp32':
        return contextlib.nullcontext()
    if precision == 'fp16' and device == 'cpu':
        raise ValueError('fp16 autocast needs a GPU; use bf16 on the CPU')
    return torch.autocast(device, dtype=torch.bfloat16 if precision == 'bf16' else torch.float16)


def compile_for_inference(fn: Callable) -> Callable:
    """``torch.compile`` with inductor's ``freezing``: weights become constants, so the positional
    MLPs and attention biases, which depend on weights and shapes only, are folded away."""
    import torch._inductor.config as inductor_config
    inductor_config.freezing = True
    return torch.compile(fn)


def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)


def time_alternately(callables: Dict[str, Callable[[], object]], warmup: int, repeats: int,
                     device: str) -> Dict[str, float]:
    """Median seconds per call of each callable, interleaving their timed calls."""
    for fn in callables.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: Dict[str, List[float]] = {name: [] for name in callables}
    for _ in range(repeats):
        for name, fn in callables.items():
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _proc_status_kb(field: str) -> int:
    with open('/proc/self/status') as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ':'))


def peak_memory_mb(fn: Callable[[], object], device: str) -> Optional[float]:
    """Peak memory of a call above what was in use before it: the CUDA allocator's peak on GPU; on
    Linux CPUs the process's peak resident set (reset through /proc/self/clear_refs), which tracks
    the tensors alive only when freed memory goes back to the system (see
    :func:`measure_in_fresh_process`); else None."""
    if device.startswith('cuda'):
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')  # resets VmHWM to the current resident set
        before = _proc_status_kb('VmRSS')
        fn()
        return (_proc_status_kb('VmHWM') - before) / 1024
    except (OSError, StopIteration):
        return None


def measure_in_fresh_process(spec: dict) -> Optional[float]:
    """Peak CPU memory of one call described by ``spec`` (the arguments of :func:`_peak_of`), in a
    new Python process whose allocator returns every large block to the system when it is freed
    (glibc would otherwise keep freed memory resident and hide the peak)."""
    import json
    import subprocess
    import sys
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='0')
    code = ('import json, sys; from mmfastervit.analysis.benchmark import _peak_of; '
            'print(json.dumps(_peak_of(**json.loads(sys.argv[1]))))')
    result = subprocess.run([sys.executable, '-c', code, json.dumps(spec)], env=env,
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f'peak memory measurement failed:\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def _peak_of(name: str, config: Optional[str], impl: str, mode: str, height: int, width: int,
             batch: int, precision: str, compare: Sequence[str],
             reference_env: Optional[str]) -> Optional[float]:
    implementations = build_implementations(name, config, height, width, compare, reference_env)
    implementations = {impl: implementations[impl]}
    for module, _ in implementations.values():
        module.train(mode == 'train')
    images = torch.randn(batch, 3, height, width)
    call = _calls(implementations, config, mode, images, 'cpu', precision, False)[impl]
    call()  # one-time allocations (kernel caches, lazily created state) are not the step's
    return peak_memory_mb(call, 'cpu')


# ----------------------------------------------------------------------------------------------
# What is timed
# ----------------------------------------------------------------------------------------------


def swin_tiny() -> torch.nn.Module:
    """mmdet's Swin-T backbone as configured for its COCO detectors."""
    from mmdet.models.backbones import SwinTransformer
    config = {k: v for k, v in SWIN_T.items() if k != 'type'}
    return SwinTransformer(**config)


def official_stage_features(official: torch.nn.Module) -> Callable:
    """The official network's stage features, each before its downsampler (as our backbone
    returns them, without our output norms).

    The downsamplers' inputs are collected by hooks registered here, once: a function that
    registers and removes hooks at every call makes ``torch.compile`` re-trace it at every call.
    """
    features = []
    for level in official.levels:
        if level.downsample is not None:
            level.downsample.register_forward_pre_hook(
                lambda module, args: features.append(args[0]))

    def forward(images):
        features.clear()
        x = official.patch_embed(images)
        for level in official.levels:
            x = level(x)
        outputs = features + [x]
        features.clear()
        return outputs
    return forward


def with_swin_backbone(cfg):
    """A copy of a detector/segmentor config with mmdet's Swin-T as its backbone, the neck (or the
    heads reading backbone features) re-wired to Swin-T's channels."""
    import copy

    from mmengine.config import ConfigDict
    cfg = copy.deepcopy(cfg)
    model = cfg.model
    channels = [SWIN_T_CHANNELS[i] for i in model.backbone.get('out_indices', (0, 1, 2, 3))]
    model.backbone = ConfigDict(SWIN_T, out_indices=model.backbone.get('out_indices', (0, 1, 2, 3)))
    if model.get('neck') is not None and 'in_channels' in model.neck:
        model.neck.in_channels = channels
        return cfg
    for head in ('decode_head', 'auxiliary_head'):
        for head_cfg in (model.get(head) or []) if isinstance(model.get(head), list) else [
                model.get(head)]:
            if head_cfg is None or 'in_channels' not in head_cfg:
                continue
            index = head_cfg.get('in_index', -1)
            head_cfg.in_channels = ([channels[i] for i in index] if isinstance(index, (list, tuple))
                                    else channels[index])
    return cfg


def build_from_config(config, swin: bool = False) -> torch.nn.Module:
    """A detector/segmentor from a config path or Config, with random weights."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import mmfastervit  # noqa: F401
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if swin:
        cfg = with_swin_backbone(cfg)
    else:
        cfg.model.backbone.init_cfg = None
    from mmfastervit.engine.runner_utils import _replace_sync_bn
    _replace_sync_bn(cfg.model)
    return MODELS.build(cfg.model)


def _detector_num_classes(model: torch.nn.Module) -> int:
    """The classes a detector predicts: those of its (first) box head."""
    head = getattr(getattr(model, 'roi_head', None), 'bbox_head', None)
    if head is None:
        head = model.bbox_head
    return (head[0] if isinstance(head, torch.nn.ModuleList) else head).num_classes


def fixed_batch(model: torch.nn.Module, batch: int, height: int, width: int,
                seed: int = 0) -> dict:
    """A data batch as a data loader gives it (uint8 images and data samples with ground truth:
    a few boxes, labels and masks for detectors, a label map for segmentors)."""
    generator = torch.Generator().manual_seed(seed)
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                scale_factor=(1.0, 1.0), img_path='', img_id=0)
    inputs = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
              for _ in range(batch)]
    samples = []
    for _ in range(batch):
        if type(model).__module__.startswith('mmseg'):
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=meta)
            num_classes = model.decode_head.num_classes
            sample.gt_sem_seg = PixelData(data=torch.randint(
                0, num_classes, (1, height, width), generator=generator))
        else:
            import numpy as np
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            from mmengine.structures import InstanceData
            sample = DetDataSample(metainfo=meta)
            num = 4
            corners = torch.rand(num, 2, 2, generator=generator) * torch.tensor([width, height])
            boxes = torch.cat([corners.min(1).values, corners.max(1).values + 16], dim=1)
            boxes = boxes.clamp(max=torch.tensor([width, height, width, height]) - 1)
            masks = np.zeros((num, height, width), dtype=np.uint8)
            for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                masks[i, y1:y2, x1:x2] = 1
            labels = torch.randint(0, _detector_num_classes(model), (num, ), generator=generator)
            sample.gt_instances = InstanceData(
                bboxes=boxes, labels=labels,
                masks=BitmapMasks(masks, height, width))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def training_step(model: torch.nn.Module, forward: Callable, images: torch.Tensor, device: str,
                  precision: str) -> Callable[[], None]:
    """A call running forward and backward of the mean of every returned feature."""
    params = [p for p in model.parameters() if p.requires_grad]

    def call():
        for param in params:
            param.grad = None
        with autocast(device.split(':')[0], precision):
            outputs = forward(images)
        sum(out.float().mean() for out in outputs).backward()
    return call


def model_training_step(model: torch.nn.Module, data: dict, device: str,
                        precision: str) -> Callable[[], None]:
    """A call running a detector's/segmentor's data preprocessor, its losses and their backward."""
    params = [p for p in model.parameters() if p.requires_grad]

    def call():
        for param in params:
            param.grad = None
        with autocast(device.split(':')[0], precision):
            batch = model.data_preprocessor(data, training=True)
            losses = model(**batch, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
    return call


def model_inference_call(model: torch.nn.Module, data: dict, device: str,
                         precision: str) -> Callable[[], object]:
    """A call running a detector's/segmentor's test step: data preprocessor, network and
    post-processing (what ``tools/test.py`` runs per batch)."""

    def call():
        with torch.inference_mode(), autocast(device.split(':')[0], precision):
            return model.test_step(data)
    return call


def _inference_call(fn: Callable, images: torch.Tensor, device: str, precision: str):

    def call():
        with torch.inference_mode(), autocast(device.split(':')[0], precision):
            return fn(images)
    return call


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------


def build_implementations(name: str, config: Optional[str], height: int, width: int,
                          compare: Sequence[str],
                          reference_env: Optional[str]) -> Dict[str, Tuple[torch.nn.Module,
                                                                          Optional[Callable]]]:
    """{implementation: (module, the function to time)} for a backbone variant ``name`` or a
    ``config``; detectors/segmentors are run through their own steps (function None)."""
    if config:
        implementations = {'ours': (build_from_config(config), None)}
        if 'swin' in compare:
            implementations['mmdet Swin-T'] = (build_from_config(config, swin=True), None)
        return implementations
    from mmfastervit.models.fastervit import FasterViT
    implementations = {}
    if 'official' in compare:
        from mmfastervit.analysis.reference import official_and_ours
        official, ours = official_and_ours(reference_env, name, height, width)
        implementations['ours'] = (ours, ours)
        implementations['official'] = (official, official_stage_features(official))
    else:
        ours = FasterViT(arch=name)
        implementations['ours'] = (ours, ours)
    if 'swin' in compare:
        swin = swin_tiny()
        implementations['mmdet Swin-T'] = (swin, swin)
    return implementations


def benchmark(archs: Sequence[str] = ('0', ), config: Optional[str] = None,
              sizes: Sequence[Tuple[int, int]] = ((224, 224), ),
              batch_sizes: Sequence[int] = (16, ), precisions: Sequence[str] = ('fp32', ),
              modes: Sequence[str] = ('infer', ), compile: bool = False,
              channels_last: bool = False, compare: Sequence[str] = (),
              reference_env: Optional[str] = None, device: str = 'cpu', warmup: int = 3,
              repeats: int = 10, log: Callable[[str], None] = print) -> List[Result]:
    """Times every combination; returns one ``Result`` per implementation and combination.

    ``compare`` may hold 'official' (backbones only: the official network with the same weights)
    and 'swin' (backbones: mmdet's Swin-T; configs: the same model with Swin-T as its backbone).
    """
    if compile and 'train' in modes:
        raise ValueError('--compile times inference only')
    results = []
    for name in ([config] if config else list(archs)):
        for height, width in sizes:
            implementations = build_implementations(name, config, height, width, compare,
                                                    reference_env)
            for module, _ in implementations.values():
                module.to(device)
                if channels_last:
                    module.to(memory_format=torch.channels_last)
            for mode in modes:
                for module, _ in implementations.values():
                    module.train(mode == 'train')  # not chained: mmdet's Swin returns None
                for batch in batch_sizes:
                    images = torch.randn(batch, 3, height, width, device=device)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    for precision in precisions:
                        calls = _calls(implementations, config, mode, images, device, precision,
                                       compile)
                        seconds = time_alternately(calls, warmup, repeats, device)
                        peaks = {}
                        if mode == 'train':
                            peaks = {impl: peak_memory_mb(fn, device) if device != 'cpu' else
                                     measure_in_fresh_process(dict(
                                         name=name, config=config, impl=impl, mode=mode,
                                         height=height, width=width, batch=batch,
                                         precision=precision, compare=list(compare),
                                         reference_env=reference_env))
                                     for impl, fn in calls.items()}
                        for impl, sec in seconds.items():
                            result = Result(name, impl, mode, height, width, batch, precision,
                                            compile, round(sec * 1000, 2), round(batch / sec, 2),
                                            peaks.get(impl) and round(peaks[impl], 1))
                            results.append(result)
                            log(format_row(result))
    return results


def _calls(implementations: Dict[str, tuple], config: Optional[str], mode: str,
           images: torch.Tensor, device: str, precision: str, compile: bool) -> Dict[str, Callable]:
    calls = {}
    for impl, (module, forward) in implementations.items():
        if config:
            batch, _, height, width = images.shape
            data = fixed_batch(module, batch, height, width)
            calls[impl] = (model_training_step(module, data, device, precision) if mode == 'train'
                           else model_inference_call(module, data, device, precision))
        elif mode == 'train':
            calls[impl] = training_step(module, forward, images, device, precision)
        else:
            if compile and impl == 'official':
                from mmfastervit.analysis.reference import switch_official_to_deploy
                switch_official_to_deploy(module, images)
            fn = compile_for_inference(forward) if compile else forward
            calls[impl] = _inference_call(fn, images, device, precision)
    return calls


def breakdown(config: str, height: int, width: int, device: str = 'cpu', precision: str = 'fp32',
              repeats: int = 3, swin: bool = False) -> Dict[str, float]:
    """Milliseconds per test step spent in each part of a detector/segmentor (the forward passes of
    its top-level modules and of the RoI head's stages), the rest (pre- and post-processing: NMS,
    box decoding, mask pasting, ...) as 'other', the median over ``repeats`` steps."""
    model = build_from_config(config, swin=swin).to(device).eval()
    parts = {}
    for name, child in model.named_children():
        if name == 'data_preprocessor':
            continue
        if name != 'roi_head':
            parts[name] = child
            continue
        for stage_name, stage_part in child.named_children():  # cascade stages one by one
            if isinstance(stage_part, torch.nn.ModuleList):
                parts.update({f'roi_head.{stage_name}.{i}': m for i, m in enumerate(stage_part)})
            else:
                parts[f'roi_head.{stage_name}'] = stage_part
    spent = {name: [] for name in [*parts, 'other', 'total']}
    current: Dict[str, float] = {}

    def timed(name: str, forward: Callable) -> Callable:
        # wraps the instance's forward: heads' predict() methods call self.forward directly,
        # which module hooks would not see
        def call(*args, **kwargs):
            synchronize(device)
            start = time.perf_counter()
            output = forward(*args, **kwargs)
            synchronize(device)
            current[name] = current.get(name, 0.0) + time.perf_counter() - start
            return output
        return call

    for name, module in parts.items():
        module.forward = timed(name, module.forward)
    data = fixed_batch(model, 1, height, width)
    step = model_inference_call(model, data, device, precision)
    try:
        step()
        for _ in range(repeats):
            current.clear()
            start = time.perf_counter()
            step()
            synchronize(device)
            total = time.perf_counter() - start
            for name in parts:
                spent[name].append(current.get(name, 0.0))
            spent['other'].append(total - sum(current.values()))
            spent['total'].append(total)
    finally:
        for module in parts.values():
            del module.forward
    return {name: 1000 * statistics.median(values) for name, values in spent.items()}


HEADER = (f'{"model":<28} {"impl":<14} {"mode":>5} {"size":>9} {"batch":>5} {"prec":>5} '
          f'{"compiled":>8} {"ms/batch":>10} {"img/s":>9} {"peak MB":>8}')


def format_row(r: Result) -> str:
    peak = '' if r.peak_mb is None else f'{r.peak_mb:.0f}'
    return (f'{r.model[-28:]:<28} {r.impl:<14} {r.mode:>5} {f"{r.height}x{r.width}":>9} '
            f'{r.batch:>5} {r.precision:>5} {str(r.compiled):>8} {r.ms_per_batch:>10.1f} '
            f'{r.images_per_s:>9.2f} {peak:>8}')


def write_csv(results: Sequence[Result], path: str) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(results[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)


def plot(results: Sequence[Result], path: str) -> None:
    """Throughput against resolution (pixels per image), one line per model/impl/batch/precision."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    lines: Dict[tuple, List[Result]] = {}
    for r in results:
        lines.setdefault((r.model, r.impl, r.mode, r.batch, r.precision, r.compiled), []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, impl, mode, batch, precision, compiled), rows in lines.items():
        rows = sorted(rows, key=lambda r: r.height * r.width)
        label = f'{model} {impl} {mode} b{batch} {precision}' + (' compiled' if compiled else '')
        ax.plot([f'{r.height}x{r.width}' for r in rows], [r.images_per_s for r in rows],
                marker='o', label=label)
    ax.set_xlabel('input size')
    ax.set_ylabel('images / s')
    ax.set_yscale('log')
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
