"""Throughput measurement: FasterViT backbones (optionally beside the official implementation or
mmdet's Swin-T) or whole detectors/segmentors from a config.

Every measurement: eval mode, ``torch.inference_mode``, ``warmup`` untimed calls, then the median of
``repeats`` timed calls (the device synchronised around each on GPU). When several implementations
are compared they are timed alternately, call by call, on the same input, so that a change in
machine load affects all of them alike.
"""
import contextlib
import csv
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

PRECISIONS = ('fp32', 'bf16', 'fp16')


@dataclass
class Result:
    model: str
    impl: str
    height: int
    width: int
    batch: int
    precision: str
    compiled: bool
    ms_per_batch: float
    images_per_s: float


def parse_size(text: str) -> Tuple[int, int]:
    height, _, width = text.lower().partition('x')
    return int(height), int(width or height)


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


def time_alternately(callables: Dict[str, Callable[[], object]], warmup: int, repeats: int,
                     device: str) -> Dict[str, float]:
    """Median seconds per call of each callable, interleaving their timed calls."""
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    for fn in callables.values():
        for _ in range(warmup):
            fn()
    sync()
    times: Dict[str, List[float]] = {name: [] for name in callables}
    for _ in range(repeats):
        for name, fn in callables.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def build_model_from_config(config: str) -> Tuple[torch.nn.Module, Callable]:
    """A detector/segmentor (random weights) and a function running it on a batch of images, by
    default in ``predict`` mode (``mode='tensor'``: the network alone, without post-processing)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import mmfastervit  # noqa: F401
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample

    def run(images: torch.Tensor, mode: str = 'predict'):
        height, width = images.shape[-2:]
        meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                    batch_input_shape=(height, width), scale_factor=(1.0, 1.0))
        samples = [Sample(metainfo=meta) for _ in range(images.shape[0])]
        return model(images, samples, mode=mode)
    return model, run


def swin_tiny() -> torch.nn.Module:
    """mmdet's Swin-T backbone as configured for its COCO detectors."""
    from mmdet.models.backbones import SwinTransformer
    return SwinTransformer(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                           window_size=7, mlp_ratio=4, qkv_bias=True, drop_path_rate=0.0,
                           patch_norm=True, out_indices=(0, 1, 2, 3), convert_weights=False)


def benchmark(archs: Sequence[str] = ('0', ), config: Optional[str] = None,
              sizes: Sequence[Tuple[int, int]] = ((224, 224), ),
              batch_sizes: Sequence[int] = (16, ), precisions: Sequence[str] = ('fp32', ),
              compile: bool = False, channels_last: bool = False,
              compare: Sequence[str] = (), reference_env: Optional[str] = None,
              device: str = 'cpu', warmup: int = 3, repeats: int = 10,
              log: Callable[[str], None] = print) -> List[Result]:
    """Times every combination; returns one ``Result`` per implementation and combination."""
    from mmfastervit.models.fastervit import FasterViT
    results = []
    models = [config] if config else list(archs)
    for name in models:
        for height, width in sizes:
            implementations: Dict[str, Tuple[torch.nn.Module, Callable]] = {}
            if config:
                implementations['ours'] = build_model_from_config(config)
            elif 'official' in compare:
                from mmfastervit.analysis.reference import official_and_ours
                official, ours = official_and_ours(reference_env, name, height, width)
                implementations['ours'] = (ours, ours)
                implementations['official'] = (official, official.forward_features)
            else:
                ours = FasterViT(arch=name)
                implementations['ours'] = (ours, ours)
            if 'swin' in compare:
                swin = swin_tiny()
                implementations['mmdet Swin-T'] = (swin, swin)
            for module, _ in implementations.values():
                module.to(device)
                module.eval()  # not chained: mmdet's Swin ``train()`` returns None
                if channels_last:
                    module.to(memory_format=torch.channels_last)
            for batch in batch_sizes:
                images = torch.randn(batch, 3, height, width, device=device)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                for precision in precisions:
                    calls = {}
                    for impl, (module, forward) in implementations.items():
                        if compile and impl == 'official':
                            from mmfastervit.analysis.reference import \
                                switch_official_to_deploy
                            switch_official_to_deploy(module, images)
                        fn = compile_for_inference(forward) if compile else forward
                        calls[impl] = _inference_call(fn, images, device, precision)
                    seconds = time_alternately(calls, warmup, repeats, device)
                    for impl, sec in seconds.items():
                        result = Result(name, impl, height, width, batch, precision, compile,
                                        round(sec * 1000, 2), round(batch / sec, 2))
                        results.append(result)
                        log(format_row(result))
    return results


def _inference_call(fn: Callable, images: torch.Tensor, device: str, precision: str):
    def call():
        with torch.inference_mode(), autocast(device.split(':')[0], precision):
            return fn(images)
    return call


HEADER = (f'{"model":<28} {"impl":<14} {"size":>9} {"batch":>5} {"prec":>5} {"compiled":>8} '
          f'{"ms/batch":>10} {"img/s":>9}')


def format_row(r: Result) -> str:
    return (f'{r.model[-28:]:<28} {r.impl:<14} {f"{r.height}x{r.width}":>9} {r.batch:>5} '
            f'{r.precision:>5} {str(r.compiled):>8} {r.ms_per_batch:>10.1f} '
            f'{r.images_per_s:>9.2f}')


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
        lines.setdefault((r.model, r.impl, r.batch, r.precision, r.compiled), []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, impl, batch, precision, compiled), rows in lines.items():
        rows = sorted(rows, key=lambda r: r.height * r.width)
        label = f'{model} {impl} b{batch} {precision}' + (' compiled' if compiled else '')
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
