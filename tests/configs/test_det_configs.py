"""The detection configs: each builds, carries the paper's recipe, and the small variants run."""
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmfastervit.datasets import SHAPE_CLASSES

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'det'
CHECKPOINT_URL = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/'

# arch: (FPN input channels, drop path rate, ImageNet checkpoint file)
VARIANTS = {
    '0': ([64, 128, 256, 512], 0.2, 'fastervit_0_224_1k.pth.tar'),
    '1': ([80, 160, 320, 640], 0.2, 'fastervit_1_224_1k.pth.tar'),
    '2': ([96, 192, 384, 768], 0.2, 'fastervit_2_224_1k.pth.tar'),
    '3': ([128, 256, 512, 1024], 0.3, 'fastervit_3_224_1k.pth.tar'),
    '4': ([196, 392, 784, 1568], 0.3, 'fastervit_4_224_1k.pth.tar'),
    '4-21k-224': ([196, 392, 784, 1568], 0.42, 'fastervit_4_21k_224_w14.pth.tar'),
}
COCO_CONFIGS = {
    arch: CONFIG_DIR / f'cascade-mask-rcnn_fastervit-{arch}_fpn_4conv1fc-giou_ms-crop-3x_coco.py'
    for arch in VARIANTS
}
LAYER_DECAY_CONFIG = CONFIG_DIR / (
    'cascade-mask-rcnn_fastervit-2_fpn_4conv1fc-giou_layer-decay-0.9_ms-crop-3x_coco.py')
TOY_CONFIG = CONFIG_DIR / 'toy' / 'cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py'
ALL_CONFIGS = [*COCO_CONFIGS.values(), LAYER_DECAY_CONFIG, TOY_CONFIG]


def load(path: Path) -> Config:
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    return cfg


def build_detector(cfg: Config) -> torch.nn.Module:
    """The detector without pretrained weights (nothing is downloaded), with BN for SyncBN as a
    non-distributed runner does."""
    model_cfg = cfg.model.copy()
    model_cfg.backbone.init_cfg = None
    return revert_sync_batchnorm(MODELS.build(model_cfg))


def resize_scales(node):
    """Every ``scale`` and ``scales`` entry of a (nested) pipeline."""
    if isinstance(node, dict):
        if 'scale' in node:
            yield node['scale']
        yield from node.get('scales', [])
        for value in node.values():
            if isinstance(value, list):
                yield from resize_scales(value)
    elif isinstance(node, list):
        for item in node:
            yield from resize_scales(item)


def test_every_cascade_config_is_covered():
    """(DINO configs: tests/configs/test_dino_configs.py.)"""
    assert sorted(CONFIG_DIR.rglob('cascade-*.py')) == sorted(ALL_CONFIGS)
    assert {path.name.split('_')[0] for path in CONFIG_DIR.rglob('*.py')} == {
        'cascade-mask-rcnn', 'dino-4scale', 'dino-5scale'}


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=lambda path: path.stem)
def test_config_builds_a_detector_matching_its_backbone(path):
    cfg = load(path)
    # The package (a config may add some of its modules that it does not import itself).
    assert cfg.custom_imports.imports[0] == 'mmfastervit'
    assert cfg.custom_imports.allow_failed_imports is False
    assert cfg.default_scope == 'mmdet'
    model = build_detector(cfg)
    assert type(model).__name__ == 'CascadeRCNN'
    assert type(model.backbone).__name__ == 'FasterViT'
    assert list(cfg.model.neck.in_channels) == list(model.backbone.out_channels)
    lateral_in_channels = [conv.conv.in_channels for conv in model.neck.lateral_convs]
    assert lateral_in_channels == model.backbone.out_channels


@pytest.mark.parametrize('arch', VARIANTS)
def test_variant_settings(arch):
    cfg = load(COCO_CONFIGS[arch])
    in_channels, drop_path_rate, checkpoint = VARIANTS[arch]
    backbone = cfg.model.backbone
    assert backbone.type == 'FasterViT' and backbone.arch == arch
    assert backbone.drop_path_rate == drop_path_rate
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=CHECKPOINT_URL + checkpoint)
    assert cfg.checkpoint_file == CHECKPOINT_URL + checkpoint
    assert list(cfg.model.neck.in_channels) == in_channels
    # Only the arguments FasterViT takes (the base config's ConvNeXt ones are deleted).
    assert set(backbone) == {'type', 'arch', 'out_indices', 'drop_path_rate', 'init_cfg'}


@pytest.mark.parametrize('arch', VARIANTS)
def test_recipe(arch):
    cfg = load(COCO_CONFIGS[arch])
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'constructor' not in cfg.optim_wrapper
    assert cfg.optim_wrapper.optimizer == dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
    assert cfg.optim_wrapper.paramwise_cfg == dict(
        norm_decay_mult=0.,
        custom_keys={
            'pos_mlp': dict(decay_mult=0.),
            'gamma': dict(decay_mult=0.)
        })
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.train_dataloader.batch_size == 2

    assert cfg.train_cfg.type == 'EpochBasedTrainLoop' and cfg.train_cfg.max_epochs == 36
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.end) == ('LinearLR', False, 1000)
    assert (steps.type, steps.by_epoch, list(steps.milestones)) == ('MultiStepLR', True, [27, 33])

    # DETR-style multi-scale resize, or resize-crop-resize.
    transforms = [step.type for step in cfg.train_dataloader.dataset.pipeline]
    assert 'RandomChoice' in transforms and 'RandomFlip' in transforms
    choice = cfg.train_dataloader.dataset.pipeline[transforms.index('RandomChoice')]
    resize_only, crop = choice.transforms
    short_sides = sorted(min(scale) for scale in resize_only[0].scales)
    assert short_sides == list(range(480, 801, 32))
    assert {max(scale) for scale in resize_only[0].scales} == {1333}
    assert [step.type for step in crop] == [
        'RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize'
    ]

    bbox_heads = cfg.model.roi_head.bbox_head
    assert len(bbox_heads) == 3
    for head in bbox_heads:
        assert (head.type, head.num_shared_convs, head.num_shared_fcs) == ('ConvFCBBoxHead', 4, 1)
        assert head.loss_bbox.type == 'GIoULoss' and head.reg_decoded_bbox
        assert head.num_classes == 80


def test_no_decay_keys_match_the_backbone_parameters():
    """The custom keys of the recipe select exactly the positional MLPs and layer scales."""
    cfg = load(COCO_CONFIGS['3'])  # FasterViT-3 has layer scales
    model = build_detector(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(param): group['weight_decay']
             for group in optim_wrapper.optimizer.param_groups for param in group['params']}
    names = [name for name, _ in model.backbone.named_parameters()]
    assert any('.gamma1' in name for name in names)
    assert any('attn.rel_pos_mlp.' in name for name in names)
    for name, param in model.backbone.named_parameters():
        positional_or_scale = '.pos_mlp.' in name or '.rel_pos_mlp.' in name or '.gamma' in name
        is_norm = any(part.startswith('norm') for part in name.split('.'))
        expected = 0. if positional_or_scale or is_norm else 0.05
        assert decay[id(param)] == pytest.approx(expected), name


def test_layer_decay_config():
    cfg = load(LAYER_DECAY_CONFIG)
    assert cfg.model.backbone.arch == '2'
    assert cfg.optim_wrapper.constructor == 'FasterViTLayerDecayOptimizerConstructor'
    assert cfg.optim_wrapper.paramwise_cfg.decay_rate == 0.9
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.
    model = build_detector(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = {id(param): group['lr']
          for group in optim_wrapper.optimizer.param_groups for param in group['params']}
    # FasterViT-2 has 3 + 3 + 8 + 5 = 19 blocks, so the stem is layer 0 of 19 and the heads 20.
    assert lr[id(model.backbone.stem.conv1.weight)] == pytest.approx(1e-4 * 0.9**20)
    assert lr[id(model.backbone.stages[3].blocks[4].mlp.fc2.weight)] == pytest.approx(1e-4 * 0.9)
    assert lr[id(model.rpn_head.rpn_conv.weight)] == pytest.approx(1e-4)


def test_toy_config():
    cfg = load(TOY_CONFIG)
    assert tuple(cfg.metainfo.classes) == SHAPE_CLASSES
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert tuple(loader.dataset.metainfo.classes) == SHAPE_CLASSES
        assert loader.persistent_workers == (loader.num_workers > 0)
    heads = [*cfg.model.roi_head.bbox_head, cfg.model.roi_head.mask_head]
    assert [head.num_classes for head in heads] == [len(SHAPE_CLASSES)] * 4
    # Everything else of the heads is the COCO recipe's.
    coco = load(COCO_CONFIGS['0'])
    for toy_head, coco_head in zip(cfg.model.roi_head.bbox_head, coco.model.roi_head.bbox_head):
        assert {**toy_head, 'num_classes': 80} == coco_head
    assert {**cfg.model.roi_head.mask_head, 'num_classes': 80} == coco.model.roi_head.mask_head
    # A CascadeRoIHead whose mask heads train on fewer RoIs; it predicts as COCO's does.
    assert cfg.model.roi_head.type == 'MaskSampledCascadeRoIHead'
    assert cfg.model.backbone.init_cfg is None
    assert cfg.optim_wrapper.optimizer.type == 'FusedSGD'
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        scales = list(resize_scales(loader.dataset.pipeline))
        assert scales and all(min(scale) <= 320 for scale in scales)


@pytest.mark.parametrize('arch', ['0', '1'])
def test_detector_trains_and_predicts(arch):
    torch.manual_seed(0)
    cfg = load(COCO_CONFIGS[arch])
    # Fewer proposals and RoIs than on COCO, to keep the test fast.
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    for stage in cfg.model.train_cfg.rcnn:
        stage.sampler.num = 16
    cfg.model.test_cfg.rpn.max_per_img = 50
    cfg.model.test_cfg.rcnn.max_per_img = 10
    model = build_detector(cfg)
    model.init_weights()
    shapes = [(3, 128, 160), (3, 160, 128)]
    packed = demo_mm_inputs(2, shapes, num_items=[2, 3], num_classes=80, with_mask=True)

    model.train()
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    assert {'loss_rpn_cls', 's0.loss_cls', 's2.loss_bbox', 's1.loss_mask'} <= set(losses)
    total = sum(value.sum() if torch.is_tensor(value) else sum(value)
                for name, value in losses.items() if 'loss' in name)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stem.conv1.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2
    for result, (_, height, width) in zip(results, shapes):
        pred = result.pred_instances
        num = len(pred)
        assert pred.bboxes.shape == (num, 4)
        assert pred.scores.shape == pred.labels.shape == (num, )
        assert pred.masks.shape == (num, height, width)
