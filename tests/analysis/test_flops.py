"""FLOP and parameter counting (tools/get_flops.py)."""
import pytest
import torch
import torch.nn.functional as F

from mmfastervit.analysis.flops import backbone_table, count, model_flops
from mmfastervit.models import FasterViT
from tests.conftest import TINY_ARCH_PLAIN

SEG_CONFIG = 'configs/seg/upernet_fastervit-0_8xb2-160k_ade20k-512x512.py'
DET_CONFIG = 'configs/det/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_ms-crop-3x_coco.py'


class Attention(torch.nn.Module):

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_fused_attention_counts_both_matrix_products():
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 5)
    flops, _ = count(Attention(), (q, k, v))
    assert flops == 2 * 3 * 10 * 7 * (8 + 5)


def test_backbone_row_counts_every_parameter():
    row, = backbone_table(['0'], 64, 96)
    expected = sum(p.numel() for p in FasterViT(arch='0').parameters())
    assert round(row['params_m'] * 1e6) == expected
    assert row['paper_gflops'] is None  # only quoted at 224x224


@pytest.mark.slow
def test_whole_models_count_more_than_their_backbone():
    backbone_flops = backbone_table(['0'], 128, 128)[0]['gflops'] * 1e9
    for config in (SEG_CONFIG, DET_CONFIG):
        flops, params = model_flops(config, 128, 128)
        assert flops > backbone_flops, config
        assert params > 30e6, config


def test_count_does_not_depend_on_earlier_calls():
    """Counting a model that has already run (eval, no_grad, other sizes) gives the same FLOPs as
    counting a fresh one, with MMEngine's counter (traced) and torch's (eager): nothing derived
    from weights is kept between calls."""
    from torch.utils.flop_counter import FlopCounterMode
    torch.manual_seed(0)
    model = FasterViT(arch=TINY_ARCH_PLAIN).eval()
    x = torch.randn(1, 3, 224, 288)

    def counts():
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return count(model, (x, ))[0], counter.get_total_flops()

    cold = counts()
    with torch.no_grad():
        model(torch.randn(1, 3, 160, 160))
        model(x)
    assert counts() == cold
