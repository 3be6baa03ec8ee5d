# DINO-4scale shrunk to train on a CPU in minutes, boxes only, on the generated toy shapes dataset
# (python tools/dataset/make_toy_coco.py --out data/toy_coco): the FasterViT-4-21K-224 recipe
# (augmentation, optimizer, denoising, the backbone as the official DINO code defines it) at 0.24x
# the COCO image scale, from random initialisation, with a tiny FasterViT of the same kind (no
# carrier tokens, layer scale, window 14 in stage 3), two encoder and three decoder layers, 30
# queries, batch 2 and a short schedule. The official DINO equivalence fixtures
# (tests/fixtures/official_dino) are made with this architecture.
_base_ = '../dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py'

data_root = 'data/toy_coco/'
metainfo = dict(classes=('circle', 'triangle', 'rectangle', 'star', 'cross'))
num_queries = 30

model = dict(
    num_queries=num_queries,
    backbone=dict(
        arch=dict(
            _delete_=True,
            depths=(1, 1, 2, 1),
            dim=16,
            in_dim=16,
            num_heads=(1, 2, 2, 4),
            window_size=(7, 7, 14, 7),
            hat=(False, False, False, False),
            layer_scale=1e-5),
        with_cp=False,
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128]),
    encoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=256))),
    decoder=dict(num_layers=3, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=256))),
    bbox_head=dict(num_classes=len(metainfo['classes'])),
    test_cfg=dict(max_per_img=num_queries))

# COCO's short sides 480-800 (long side at most 1333) and random-crop branch, times 0.24: images
# of at most 320 px.
train_scales = [(short, 320) for short in range(112, 193, 16)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True)],
                    [
                        dict(
                            type='RandomChoiceResize',
                            scales=[(96, 1008), (120, 1008), (144, 1008)],
                            keep_ratio=True),
                        dict(
                            type='RandomCrop',
                            crop_type='absolute_range',
                            crop_size=(92, 144),
                            allow_negative_crop=True),
                        dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True)
                    ]]),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 192), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]

train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# From scratch the backbone learns at the full rate (the recipe's 0.1x is for pretrained weights).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
max_iters = 500
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[int(max_iters * 11 / 12)],
        gamma=0.1)
]

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
