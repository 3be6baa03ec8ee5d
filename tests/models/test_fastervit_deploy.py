"""The backbone under torch.compile, autocast, channels_last and ONNX export."""
import collections
import contextlib
import sys

import pytest
import torch
import torch._dynamo
import torch.nn as nn
import torch.nn.functional as F

import mmfastervit  # noqa: F401
from mmfastervit import compat
from mmfastervit.models import kernels
from mmfastervit.models.fastervit import FasterViT
from tests.conftest import TINY_ARCH_LAYER_SCALE_PROPAGATION as TINY_ARCH
from tests.conftest import compile_keeping_graphs



def tiny_model():
    torch.manual_seed(0)
    return FasterViT(arch=TINY_ARCH).eval()


def test_compiles_without_graph_breaks_or_recompiles():
    model = tiny_model()
    x = torch.randn(2, 3, 224, 288)
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1

    compiled, compiles = compile_keeping_graphs(model)
    with torch.no_grad():
        outs = [compiled(x) for _ in range(3)]
        eager = model(x)
    assert len(compiles) == 1
    for out, ref in zip(outs[-1], eager):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def traced_calls(model: nn.Module, x: torch.Tensor, exporting: bool) -> collections.Counter:
    """How often each function is called in the graphs a real torch.compile traces."""
    compiled, graphs = compile_keeping_graphs(model)
    with torch.no_grad(), compat.exporting() if exporting else contextlib.nullcontext():
        compiled(x)
    # Older torches keep torch.nn's own layers as modules in the graph: count them as their function
    functions = {nn.Conv2d: F.conv2d, nn.Linear: F.linear}
    calls = collections.Counter()
    for graph in graphs:
        for node in graph.graph.nodes:
            if node.op in ('call_function', 'call_method'):
                calls[node.target] += 1
            elif node.op == 'call_module':
                calls[functions.get(type(graph.get_submodule(node.target)), node.target)] += 1
    return calls


@pytest.mark.parametrize('exporting', [False, True])
def test_compile_traces_the_compile_branches_and_export_the_export_ones(exporting):
    """torch.compile takes the fast kernels (token linears as 1x1 convolutions where the CPU has
    AVX-512, pooling by ``avg_pool2d``); only an export, marked by ``compat.exporting()``, takes
    the graph-export ones (``F.linear``, pooling from cumulative sums). Both write attention out."""
    model = tiny_model()
    calls = traced_calls(model, torch.randn(1, 3, 224, 288), exporting)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    token_linears = sum(isinstance(m, kernels.TokenLinear) for m in model.modules())
    plain_linears = sum(type(m) is nn.Linear for m in model.modules())
    token_convs = token_linears if kernels.CPU_TOKEN_CONV and not exporting else 0
    assert calls[F.conv2d] == convs + token_convs
    assert calls[F.linear] == plain_linears + token_linears - token_convs
    assert (calls[F.avg_pool2d], calls['cumsum']) == ((0, 2) if exporting else (1, 0))
    assert calls[F.scaled_dot_product_attention] == 0


def test_bf16_autocast_and_channels_last_match_fp32():
    model = tiny_model()
    x = torch.randn(2, 3, 224, 256)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf16 = model(x)
        model_cl = tiny_model().to(memory_format=torch.channels_last)
        channels_last = model_cl(x.contiguous(memory_format=torch.channels_last))
    for ref, low, cl in zip(reference, bf16, channels_last):
        assert torch.isfinite(low).all()
        assert (low.float() - ref).abs().max() <= 0.1 * ref.abs().max()
        torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_onnx_export_with_dynamic_size_matches_pytorch(tmp_path):
    sys.path.insert(0, 'tools')
    from export_onnx import export, verify
    model = tiny_model()
    path = str(tmp_path / 'tiny.onnx')
    if compat.TORCH_VERSION < compat.MIN_TORCH_DYNAMO_ONNX:
        with pytest.raises(RuntimeError, match=r'needs torch >= \d'):
            export(model, path, torch.randn(2, 3, 224, 288), min_size=128, max_size=2048)
        return
    export(model, path, torch.randn(2, 3, 224, 288), min_size=128, max_size=2048)
    assert verify(model, path, [(1, 160, 328), (2, 428, 203)]) <= 1e-4


@pytest.mark.parametrize('native_bf16', [False, True])
def test_bf16_autocast_warns_where_the_cpu_emulates_bf16(monkeypatch, native_bf16):
    import warnings
    monkeypatch.setattr(kernels, 'CPU_NATIVE_BF16', native_bf16)
    model = tiny_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))  # fp32: never a warning
            with torch.autocast('cpu', dtype=torch.bfloat16):
                model(torch.randn(1, 3, 64, 64))
    emulated = [w for w in caught if 'bf16 is emulated' in str(w.message)]
    assert len(emulated) == (0 if native_bf16 else 1)
