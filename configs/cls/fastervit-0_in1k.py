# FasterViT-0 on ImageNet-1K, official checkpoint:
# https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar
_base_ = './_base_/fastervit_in1k.py'

model = dict(arch='0')
# crop_pct 0.875: the short side is resized to floor(224 / 0.875) = 256.
test_pipeline = [
    _base_.test_pipeline[0],
    dict(_base_.test_pipeline[1], size=256),
    *_base_.test_pipeline[2:],
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
