# The FasterViT-0 Cascade Mask R-CNN recipe shrunk to train on a CPU in minutes, on the generated
# toy shapes dataset (python tools/dataset/make_toy_coco.py --out data/toy_coco): same model (bar
# the backbone output norms, see below), augmentation and optimizer, at 0.24x the COCO image scale,
# from random initialisation, with fewer proposals and sampled RoIs, batch 2 and a short schedule.
_base_ = '../cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_ms-crop-3x_coco.py'

data_root = 'data/toy_coco/'
metainfo = dict(classes=('circle', 'triangle', 'rectangle', 'star', 'cross'))
num_classes = len(metainfo['classes'])

model = dict(
    # From scratch, BatchNorm on the backbone outputs learns several times faster than the channel
    # LayerNorm the COCO configs keep for the ImageNet weights.
    backbone=dict(init_cfg=None, norm_cfg=dict(type='BN', requires_grad=True)),
    roi_head=dict(
        bbox_head=[dict(head, num_classes=num_classes) for head in _base_.model.roi_head.bbox_head],
        mask_head=dict(num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=250),
        rcnn=[
            dict(stage, sampler=dict(stage.sampler, num=32))
            for stage in _base_.model.train_cfg.rcnn
        ]),
    test_cfg=dict(rpn=dict(nms_pre=250, max_per_img=100), rcnn=dict(max_per_img=20)))

# COCO's short sides 480-800 (long side at most 1333) and random-crop branch, times 0.24: images
# of at most 320 px.
train_scales = [(short, 320) for short in range(112, 193, 16)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True)],
                    [
                        dict(
                            type='RandomChoiceResize',
                            scales=[(96, 320), (120, 320), (144, 320)],
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
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
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

max_iters = 500
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[int(max_iters * 0.75), int(max_iters * 0.92)],
        gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
