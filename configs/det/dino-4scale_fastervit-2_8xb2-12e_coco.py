# DINO-4scale with a FasterViT-2 backbone on COCO, 12 epochs: as the FasterViT-0 config.
_base_ = './dino-4scale_fastervit-0_8xb2-12e_coco.py'

checkpoint_file = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_2_224_1k.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(arch='2', init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[192, 384, 768]))
