"""Parameters and FLOPs through MMEngine's analysis (jit-traced, one multiply-add = one FLOP, the
convention of the FasterViT paper), with a counter for fused attention that MMEngine lacks."""
from typing import List, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape

from .benchmark import build_from_config, fixed_batch

# FLOPs at 224x224 published in the paper, in G.
PAPER_GFLOPS = {'0': 3.3, '1': 5.3, '2': 8.7, '3': 18.2, '4': 36.6, '5': 113.0, '6': 142.0}


def sdpa_flop_jit(inputs: List, outputs: List) -> int:
    """q (..., N, d) against k (..., M, d) and v (..., M, dv): N*M*d + N*M*dv multiply-adds."""
    q_shape, k_shape, v_shape = (get_shape(v) for v in inputs[:3])
    *batch, n, d = q_shape
    m, dv = k_shape[-2], v_shape[-1]
    return int(torch.Size(batch).numel()) * n * m * (d + dv)


def count(model: torch.nn.Module, inputs: Tuple) -> Tuple[int, int]:
    """(FLOPs, parameters) of ``model(*inputs)`` in eval mode."""
    model.eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = analyzer.total()
    return flops, parameter_count(model)['']


def _tensors(output) -> List[torch.Tensor]:
    """The tensors in a nest of tuples, lists and dicts (what models return in tensor mode)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


class _TensorMode(torch.nn.Module):
    """A detector/segmentor's network without post-processing (``mode='tensor'``, what MMDetection
    and MMSegmentation count FLOPs of), as a module taking and returning tensors for tracing."""

    def __init__(self, model: torch.nn.Module, data_samples: list):
        super().__init__()
        self.model, self.data_samples = model, data_samples

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        return _tensors(self.model(images, self.data_samples, mode='tensor'))


def model_flops(config: str, height: int, width: int) -> Tuple[int, int]:
    """(FLOPs, parameters) of a config's detector/segmentor (random weights) on one image."""
    model = build_from_config(config)
    samples = fixed_batch(model, 1, height, width)['data_samples']
    for sample in samples:
        sample.set_metainfo(dict(batch_input_shape=(height, width)))
    return count(_TensorMode(model, samples), (torch.randn(1, 3, height, width), ))


def backbone_table(archs: Sequence[str], height: int = 224, width: int = 224) -> List[dict]:
    from mmfastervit.models.fastervit import FasterViT
    rows = []
    for arch in archs:
        model = FasterViT(arch=arch)
        flops, params = count(model, (torch.randn(1, 3, height, width), ))
        rows.append(dict(arch=arch, params_m=params / 1e6, gflops=flops / 1e9,
                         paper_gflops=PAPER_GFLOPS.get(arch) if (height, width) == (224, 224)
                         else None))
        del model
    return rows
