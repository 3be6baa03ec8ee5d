_base_ = './cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_ms-crop-3x_coco.py'

checkpoint_file = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_1_224_1k.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(arch='1', drop_path_rate=0.2, init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[80, 160, 320, 640]))
