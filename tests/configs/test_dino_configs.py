"""The DINO configs: the official FasterViT DINO recipe (its config files
``DINO_{4,5}scale_faster_vit_*_224.py`` and their ``coco_transformer.py`` base), the backbone
definition each variant's weights were trained with, and the toy config trains."""
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmfastervit.datasets import SHAPE_CLASSES

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'det'
CHECKPOINT_URL = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
DINO_21K = CONFIG_DIR / 'dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py'
DINO_21K_5SCALE = CONFIG_DIR / 'dino-5scale_fastervit-4-21k-224_8xb2-12e_coco.py'
# arch: (channels at strides 8/16/32, ImageNet-1K checkpoint file)
VARIANTS_1K = {
    '0': ([128, 256, 512], 'fastervit_0_224_1k.pth.tar'),
    '1': ([160, 320, 640], 'fastervit_1_224_1k.pth.tar'),
    '2': ([192, 384, 768], 'fastervit_2_224_1k.pth.tar'),
    '3': ([256, 512, 1024], 'fastervit_3_224_1k.pth.tar'),
    '4': ([392, 784, 1568], 'fastervit_4_224_1k.pth.tar'),
}
DINO_1K = {arch: CONFIG_DIR / f'dino-4scale_fastervit-{arch}_8xb2-12e_coco.py'
           for arch in VARIANTS_1K}
TOY = CONFIG_DIR / 'toy' / 'dino-4scale_fastervit-tiny_toy-shapes.py'
COCO_CONFIGS = [DINO_21K, DINO_21K_5SCALE, *DINO_1K.values()]


def load(path: Path) -> Config:
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    return cfg


def test_every_dino_config_is_covered():
    assert sorted(CONFIG_DIR.rglob('dino-*.py')) == sorted([*COCO_CONFIGS, TOY])


@pytest.mark.parametrize('path', [*COCO_CONFIGS, TOY], ids=lambda path: path.stem)
def test_config_builds_dino_on_its_backbone(path):
    cfg = load(path)
    assert cfg.custom_imports == dict(imports=['mmfastervit'], allow_failed_imports=False)
    assert [hook.type for hook in cfg.custom_hooks] == [
        'OfficialDINOCheckpointHook', 'ResumeRandomStateHook'
    ]
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'DINO' and type(model.backbone).__name__ == 'FasterViT'
    channels = [model.backbone.out_channels[i] for i in model.backbone.out_indices]
    assert [conv.conv.in_channels for conv in model.neck.convs] == channels
    assert model.neck.extra_convs[0].conv.in_channels == channels[-1]
    # the official input projections: convolution with a bias, then GroupNorm(32)
    assert all(conv.conv.bias is not None and conv.gn.num_groups == 32
               for conv in [*model.neck.convs, *model.neck.extra_convs])
    assert len(model.neck.convs) + len(model.neck.extra_convs) == model.num_feature_levels


@pytest.mark.parametrize('path', COCO_CONFIGS, ids=lambda path: path.stem)
def test_official_recipe(path):
    cfg = load(path)
    model = cfg.model
    # lr 1e-4, lr_backbone 1e-5, weight_decay 1e-4, clip_max_norm 0.1
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
    assert cfg.optim_wrapper.paramwise_cfg == dict(custom_keys={'backbone': dict(lr_mult=0.1)})
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
    # epochs 12, lr_drop 11; batch_size 2 on 8 GPUs
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop' and cfg.train_cfg.max_epochs == 12
    (steps, ) = cfg.param_scheduler
    assert (steps.type, steps.by_epoch, list(steps.milestones), steps.gamma) == (
        'MultiStepLR', True, [11], 0.1)
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    # data_aug_scales 480..800 step 32 (max 1333), or resize to 400/500/600, crop 384-600, rescale
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [step.type for step in pipeline] == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomFlip', 'RandomChoice', 'PackDetInputs'
    ]
    resize_only, crop = pipeline[3].transforms
    scales = [(short, 1333) for short in range(480, 801, 32)]
    assert [list(scale) for scale in resize_only[0].scales] == [list(s) for s in scales]
    assert [step.type for step in crop] == ['RandomChoiceResize', 'RandomCrop',
                                            'RandomChoiceResize']
    assert sorted(min(scale) for scale in crop[0].scales) == [400, 500, 600]
    assert (crop[1].crop_type, tuple(crop[1].crop_size)) == ('absolute_range', (384, 600))
    assert [list(scale) for scale in crop[2].scales] == [list(s) for s in scales]
    assert list(cfg.test_dataloader.dataset.pipeline[1].scale) == [1333, 800]
    # num_queries 900, num_select 300, pe_temperature 20, 6 + 6 layers, hidden_dim 256, ffn 2048
    assert model.num_queries == 900 and model.test_cfg.max_per_img == 300
    assert model.positional_encoding.temperature == 20
    assert model.encoder.num_layers == model.decoder.num_layers == 6
    assert model.encoder.layer_cfg.ffn_cfg.feedforward_channels == 2048
    assert model.bbox_head.num_classes == 80
    # use_dn with dn_number 100, dn_label_noise_ratio 0.5, dn_box_noise_scale 0.4
    assert model.dn_cfg.label_noise_scale == 0.5 and model.dn_cfg.box_noise_scale == 0.4
    assert model.dn_cfg.group_cfg == dict(dynamic=True, num_groups=None, num_dn_queries=100)
    # the official FasterViT builder's drop_path_rate 0.1 for every variant
    assert model.backbone.drop_path_rate == 0.1
    assert model.backbone.norm_cfg == dict(type='BN', requires_grad=True)


def test_21k_configs_use_the_official_dino_backbone_definition():
    four, five = load(DINO_21K), load(DINO_21K_5SCALE)
    for cfg in (four, five):
        backbone = cfg.model.backbone
        assert backbone.arch == '4-21k-224'
        assert (backbone.window_coord_norm, backbone.pad_conv_stages) == ('tokens', True)
        assert backbone.init_cfg.checkpoint == CHECKPOINT_URL + 'fastervit_4_21k_224_w14.pth.tar'
    # return_interm_indices [1, 2, 3] and use_checkpoint True; 5-scale: [0, 1, 2, 3], False
    assert tuple(four.model.backbone.out_indices) == (1, 2, 3) and four.model.backbone.with_cp
    assert four.model.neck.num_outs == four.model.encoder.layer_cfg.self_attn_cfg.num_levels == 4
    assert tuple(five.model.backbone.out_indices) == (0, 1, 2, 3)
    assert not five.model.backbone.with_cp
    assert five.model.num_feature_levels == five.model.neck.num_outs == 5
    assert five.model.encoder.layer_cfg.self_attn_cfg.num_levels == 5
    assert five.model.decoder.layer_cfg.cross_attn_cfg.num_levels == 5


@pytest.mark.parametrize('arch', VARIANTS_1K)
def test_1k_configs_use_the_classification_backbone_definition(arch):
    cfg = load(DINO_1K[arch])
    channels, checkpoint = VARIANTS_1K[arch]
    backbone = cfg.model.backbone
    assert backbone.arch == arch
    assert (backbone.window_coord_norm, backbone.pad_conv_stages) == ('side', False)
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=CHECKPOINT_URL + checkpoint)
    assert tuple(backbone.out_indices) == (1, 2, 3) and backbone.with_cp
    assert list(cfg.model.neck.in_channels) == channels


def test_toy_config_trains():
    """One training step of the toy config's detector (denoising queries included) gives finite
    losses and gradients in the backbone."""
    cfg = load(TOY)
    assert tuple(cfg.metainfo.classes) == SHAPE_CLASSES
    assert cfg.model.bbox_head.num_classes == len(SHAPE_CLASSES)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.persistent_workers == (loader.num_workers > 0)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    data = model.data_preprocessor(
        demo_mm_inputs(2, [[3, 96, 128], [3, 80, 112]], num_classes=len(SHAPE_CLASSES)),
        training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert 'dn_loss_cls' in losses
    total = sum(value for key, value in losses.items() if 'loss' in key)
    assert torch.isfinite(total)
    total.backward()
    grad = model.backbone.stem.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
