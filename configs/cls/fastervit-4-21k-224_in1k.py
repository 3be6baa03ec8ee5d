# FasterViT-4 pre-trained on ImageNet-21K, fine-tuned on ImageNet-1K at 224 px, official
# checkpoint: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_224_w14.pth.tar
_base_ = './_base_/fastervit_in1k.py'

model = dict(arch='4-21k-224')
# crop_pct 0.95 in timm's 'squash' crop mode: both sides are resized to floor(224 / 0.95) = 235,
# ignoring the aspect ratio, before the centre crop.
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation'),
    dict(
        type='Resize',
        scale=(235, 235),
        keep_ratio=False,
        interpolation='bicubic',
        backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackClsInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
