# FasterViT-4 pre-trained on ImageNet-21K, fine-tuned on ImageNet-1K at 384 px, official
# checkpoint: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_384_w24.pth.tar
_base_ = './fastervit-4-21k-224_in1k.py'

model = dict(arch='4-21k-384')
# crop_pct 1.0 in squash mode: both sides resized to floor(384 / 1.0) = 384, then the centre crop.
test_pipeline = [
    _base_.test_pipeline[0],
    dict(_base_.test_pipeline[1], scale=(384, 384)),
    dict(type='CenterCrop', crop_size=384),
    _base_.test_pipeline[3],
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
