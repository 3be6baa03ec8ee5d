# FasterViT-4 pre-trained on ImageNet-21K, fine-tuned on ImageNet-1K at 768 px, official
# checkpoint: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_768_w48.pth.tar
_base_ = './fastervit-4-21k-224_in1k.py'

model = dict(arch='4-21k-768')
# crop_pct 0.93 in squash mode: both sides resized to floor(768 / 0.93) = 825, then centre crop.
test_pipeline = [
    _base_.test_pipeline[0],
    dict(_base_.test_pipeline[1], scale=(825, 825)),
    dict(type='CenterCrop', crop_size=768),
    _base_.test_pipeline[3],
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
