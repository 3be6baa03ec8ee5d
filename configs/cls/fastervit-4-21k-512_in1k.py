# FasterViT-4 pre-trained on ImageNet-21K, fine-tuned on ImageNet-1K at 512 px, official
# checkpoint: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_512_w32.pth.tar
_base_ = './fastervit-4-21k-224_in1k.py'

model = dict(arch='4-21k-512')
# crop_pct 1.0 in squash mode: both sides resized to floor(512 / 1.0) = 512, then the centre crop.
test_pipeline = [
    _base_.test_pipeline[0],
    dict(_base_.test_pipeline[1], scale=(512, 512)),
    dict(type='CenterCrop', crop_size=512),
    _base_.test_pipeline[3],
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
