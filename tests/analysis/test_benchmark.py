"""tools/benchmark.py: what it times and how it swaps backbones (timings themselves are never
asserted)."""
import pytest
import torch
from mmengine.config import Config

from mmfastervit.analysis import benchmark as bench
from tests.conftest import compile_keeping_graphs

DET_CONFIG = 'configs/det/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_ms-crop-3x_coco.py'
SEG_CONFIG = 'configs/seg/toy/upernet_fastervit-0_toy-ade-224x224.py'


def test_machine_description_names_the_vector_instructions(monkeypatch):
    from mmfastervit.models import kernels
    monkeypatch.setattr(kernels, 'cpu_flags', lambda: frozenset({'avx2', 'avx512f'}))
    description = bench.machine_description('cpu')
    assert 'AVX2 AVX-512;' in description and 'BF16' not in description
    monkeypatch.setattr(kernels, 'cpu_flags', lambda: frozenset())
    assert 'no AVX2' in bench.machine_description('cpu')


@pytest.mark.parametrize('config,rewired', [
    (DET_CONFIG, lambda model: model.neck.in_channels == [96, 192, 384, 768]),
    (SEG_CONFIG, lambda model: (model.decode_head.in_channels == [96, 192, 384, 768]
                                and model.auxiliary_head.in_channels == 384)),
])
def test_swin_backbone_swap_rewires_what_reads_the_backbone(config, rewired):
    cfg = Config.fromfile(config)
    swapped = bench.with_swin_backbone(cfg)
    assert swapped.model.backbone.type == 'mmdet.SwinTransformer'
    assert rewired(swapped.model)
    assert cfg.model.backbone.type == 'FasterViT'  # the original is left alone


@pytest.mark.parametrize('config', [
    DET_CONFIG, 'configs/det/toy/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py',
    'configs/det/toy/dino-4scale_fastervit-tiny_toy-shapes.py'])
def test_fixed_detection_batch_labels_fit_the_heads(config):
    model = bench.build_from_config(config)
    head = model.roi_head.bbox_head[0] if hasattr(model, 'roi_head') else model.bbox_head
    labels = torch.cat([sample.gt_instances.labels
                        for sample in bench.fixed_batch(model, 8, 64, 96)['data_samples']])
    assert 0 <= labels.min() and labels.max() < head.num_classes
    assert len(labels.unique()) > 1


@pytest.mark.slow
def test_backbone_inference_and_training_rows_with_peak_memory():
    results = bench.benchmark(archs=['0'], sizes=[(64, 96)], batch_sizes=[2],
                              modes=('infer', 'train'), warmup=1, repeats=1, log=lambda _: None)
    assert [(r.impl, r.mode, r.batch, r.height, r.width) for r in results] == [
        ('ours', 'infer', 2, 64, 96), ('ours', 'train', 2, 64, 96)]
    assert all(r.images_per_s > 0 for r in results)
    infer, train = results
    assert infer.peak_mb is None
    assert train.peak_mb > 1  # a training step keeps its activations for the backward pass


@pytest.mark.slow
def test_breakdown_parts_add_up_to_the_whole_step():
    parts = bench.breakdown(SEG_CONFIG, 96, 128, repeats=1)
    assert {'backbone', 'decode_head', 'other', 'total'} <= set(parts)
    assert sum(ms for name, ms in parts.items() if name != 'total') == pytest.approx(
        parts['total'], rel=1e-6)
    assert parts['backbone'] > 0 and parts['decode_head'] > 0


class _Level(torch.nn.Module):
    def __init__(self, downsample: bool):
        super().__init__()
        self.blocks = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.downsample = torch.nn.AvgPool2d(2) if downsample else None

    def forward(self, x):
        x = self.blocks(x)
        return x if self.downsample is None else self.downsample(x)


class _OfficialLike(torch.nn.Module):
    """The attributes of the official network that the benchmark reads."""

    def __init__(self):
        super().__init__()
        self.patch_embed = torch.nn.Conv2d(3, 4, 1)
        self.levels = torch.nn.ModuleList([_Level(True), _Level(True), _Level(False)])


def test_official_stage_features_compile_once():
    official = _OfficialLike().eval()
    forward = bench.official_stage_features(official)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = forward(x)
    assert [f.shape[-1] for f in expected] == [16, 8, 4]

    compiled, traced_graphs = compile_keeping_graphs(forward)
    with torch.no_grad():
        for _ in range(3):
            outputs = compiled(x)
    assert len(traced_graphs) == 1
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref)
