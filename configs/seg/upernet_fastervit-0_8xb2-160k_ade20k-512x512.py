# UperNet + FasterViT-0 on ADE20K: 512x512 crops, 8 GPUs x 2 images, 160k iterations.
# The recipe of MMSegmentation's Swin UperNet (AdamW, linear warm-up then poly decay), which the
# FasterViT paper follows.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmfastervit'], allow_failed_imports=False)
# Checkpoints also hold the torch random state, so that a resumed run continues exactly.
custom_hooks = [dict(type='ResumeRandomStateHook')]

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
checkpoint_file = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar'  # noqa: E501
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='FasterViT',
        arch='0',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_index=2, in_channels=256, num_classes=150))

# No weight decay on normalisation layers, positional MLPs (token and attention-bias ones) and layer
# scales.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'pos_mlp': dict(decay_mult=0.),
            'gamma': dict(decay_mult=0.),
        }))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]

# 8 GPUs x 2 images; the learning rate above is for that total batch of 16.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Multi-scale + flip testing (``tools/test.py --tta``). The scales are ratios of the single-scale
# test scale (2048, 512), as in the MMSegmentation 0.x protocol behind published "ms" ADE20K numbers
# (the mmseg 1.x base multiplies the original image size instead).
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True)
                for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal'),
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ]),
]
