# Evaluation of an official FasterViT ImageNet-1K classifier on the ImageNet validation set laid
# out as data/imagenet/val/<wnid>/<image>.JPEG. The test pipeline is timm's evaluation
# preprocessing: PIL decoding, bicubic resizing to img_size / crop_pct, a centre crop of img_size;
# here crop_pct 1.0 at 224 px. The variant configs set the architecture and their own crop.
custom_imports = dict(imports=['mmfastervit'], allow_failed_imports=False)
# The classification modules live in MMEngine's root registries.
default_scope = 'mmengine'

model = dict(type='FasterViTClassifier', num_classes=1000)

data_root = 'data/imagenet'
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation'),
    dict(type='ResizeShortSide', size=224, interpolation='bicubic', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackClsInputs'),
]
test_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ImageNet', data_root=data_root, data_prefix=dict(img_path='val'),
        pipeline=test_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, 5))
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
log_processor = dict(window_size=50, by_epoch=False)
log_level = 'INFO'
load_from = None
