# The FasterViT-0 Cascade Mask R-CNN recipe shrunk to train on a CPU in minutes, from random
# initialisation, on the generated toy shapes dataset of scripts/demo_det.sh (python
# tools/dataset/make_toy_coco.py --out data/toy_coco_upright --background plain --upright ...). The
# model is the COCO one (4conv1fc GIoU box heads, mask heads, FPN, RPN) bar the backbone's norms
# and the anchor sizes; what departs from the COCO recipe, and why, is noted where it is set. Box
# mAP figures below are on the toy validation set, one run each (runs of one recipe differed by up
# to 0.08); those measured while the conv stages had BatchNorm say so, all but the figures of the
# upright shapes, the mask RoIs and the schedule were measured with shapes rotated at random, and
# all but those and the figures of the anchors and of 8 and 12 RoIs with COCO's anchors. At 128 px
# more than half of the forward pass goes to the twelve 256-channel convolutions of the box heads
# and the twelve of the mask heads, run over every sampled RoI (the backbone takes a quarter), so
# the recipe samples few RoIs rather than shrinking the images further.
_base_ = '../cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_ms-crop-3x_coco.py'
custom_imports = dict(imports=['mmfastervit', 'mmfastervit.models.roi_heads'])

# Shapes drawn upright (make_toy_coco.py --upright). Rotated at random, they took the recipe about
# twice as many iterations: after 400 the boxes were there (93 % of the validation shapes found
# at IoU 0.5) but its classifier told little beyond circles and stars apart, box mAP 0.21, where
# upright shapes gave 0.49 and 0.42; 720 iterations on rotated shapes gave 0.48 to 0.55.
data_root = 'data/toy_coco_upright/'
metainfo = dict(classes=('circle', 'triangle', 'rectangle', 'star', 'cross'))
num_classes = len(metainfo['classes'])
image_scale = (128, 128)

model = dict(
    backbone=dict(
        # GroupNorm in the stem and conv blocks (as MMDetection's from-scratch configs) instead of
        # the official network's BatchNorm. At one image a step, BatchNorm normalises each image by
        # its own statistics while training but by running averages of them at test, and on these
        # plain two-colour backgrounds the two differ widely: the BatchNorm recipe's model scored
        # box mAP 0.29 tested as usual and 0.52 with every test image normalised by its own
        # statistics. Trained with GroupNorm, the same recipe scored 0.46.
        conv_norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        # BatchNorm on the backbone outputs (the COCO configs keep the channel LayerNorm of the
        # ImageNet weights): it learned several times faster than LayerNorm from scratch, and its
        # running averages are not the problem above (per-image statistics there gave 0.23).
        norm_cfg=dict(type='BN', requires_grad=True),
        # Stochastic depth regularises a 36-epoch schedule; a few hundred iterations need none.
        drop_path_rate=0.0,
        init_cfg=None),
    # Anchors of 16 to 256 px instead of COCO's 32 to 512 (scale 4 instead of 8): at 128 px the
    # shapes are 17 to 64 px across, and the smallest overlap no 32 px anchor at IoU 0.3, the RPN's
    # lowest positive match. Trained with COCO's anchors, the RPN ranked small shapes low: of its
    # 30 best proposals none found a shape under 24 px, and testing with 30 proposals instead of
    # 100 cut the box mAP from 0.51 to 0.35. With these anchors 30 proposals lose nothing (0.53
    # against 0.52 with 100), and the test takes half the time.
    rpn_head=dict(anchor_generator=dict(scales=[4])),
    roi_head=dict(
        # The mask heads train on at most 4 of each stage's positive RoIs per image, drawn at
        # random (COCO: all of them, up to 128). A mask head's convolutions run at 14x14, four
        # times a box head's positions, so with up to 8 positives they took the largest share of a
        # step. With 4, a step of a trained model took 0.87 and 0.93 s against 0.99 and 1.05 s
        # (alternating); box / mask mAP after 440 iterations 0.527 / 0.568 and 0.497 / 0.540,
        # against 0.572 / 0.630 with all (one run). Inference is unchanged.
        type='MaskSampledCascadeRoIHead',
        max_mask_rois=4,
        bbox_head=[dict(head, num_classes=num_classes) for head in _base_.model.roi_head.bbox_head],
        mask_head=dict(num_classes=num_classes)),
    train_cfg=dict(
        # At most 4 shapes an image: 100 proposals cover them (COCO: 2000).
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        # 16 RoIs an image and stage instead of 512 (the heads' cost is per RoI), half of them
        # positive instead of a quarter: box mAP 0.55 against 0.45 (512 training images). Fewer
        # learn less in the same number of steps: 0.45 with 12, 0.26 with 8 (720 iterations).
        rcnn=[
            dict(stage, sampler=dict(stage.sampler, num=16, pos_fraction=0.5))
            for stage in _base_.model.train_cfg.rcnn
        ]),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=30), rcnn=dict(max_per_img=20)))

# One scale and flips only: COCO's multi-scale and crop augmentation fights overfitting over 36
# epochs, while a few hundred iterations do not get near it. The generated images have sides of
# 128 to 192 px; at most 128 px, the shapes are 17 to 64 px across (9 in 10 still overlap one of
# the RPN's anchors at IoU >= 0.5) and the backbone's forward pass is cheaper (0.09 s a batch of
# two, against 0.14 s at 160 to 224 px).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]

# One image a step (COCO: two per GPU, 16 in all): on 2 cores a step took 0.85 s against 1.4 s for
# two images (a quarter of the RoIs positive; about 1 s now), and from scratch more, smaller steps
# learned more from the same images (BatchNorm: box mAP 0.14 after 400 images at batch 1, after 600
# at batch 2; 0.18 after 600 images at batch 1).
train_dataloader = dict(
    batch_size=1,
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

# SGD with momentum instead of AdamW: from scratch on this data (two images a step, BatchNorm) it
# reached box mAP 0.08 after 100 iterations where AdamW at lr 3e-4 (better than 1e-4 and 1e-3) had
# 0.02, and 0.12 against 0.09 after 300; SGD at lr 0.02 did worse than at 0.01.
# Fused where torch can (torch >= 2.4 on a CPU): the per-parameter loop took about 0.35 s a step.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='FusedSGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=35, norm_type=2),
    paramwise_cfg=dict(norm_decay_mult=0.))

# 480 iterations, about 7 minutes on 2 cores (COCO: 36 epochs): box / mask mAP 0.610 / 0.617 and
# 0.561 / 0.581 in two runs, against 0.527 / 0.568 and 0.497 / 0.540 after 440 (one run each,
# two at a time). With all positive RoIs for the mask heads: 0.23 after 300, 0.49 and 0.42 after
# 400, 0.57 after 440. The box mAP jumps when the learning rate drops (rotated shapes, COCO's
# anchors: 0.23 at 400 iterations, 0.59 at 800), and with BatchNorm a cosine decay from the end of
# the warm-up did worse than the step (0.20 against 0.29). The warm-up covers 40 images, as it did
# at two images a step.
max_iters = 480
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[int(max_iters * 0.85)],
        gamma=0.1)
]

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
