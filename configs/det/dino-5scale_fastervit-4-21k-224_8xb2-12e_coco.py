# DINO-5scale with a FasterViT-4-21K-224 backbone on COCO, 12 epochs: the official 5-scale recipe,
# features of all four stages (strides 4-32) plus one extra level, without activation checkpointing
# (as the official configs). Everything else as the 4-scale config.
_base_ = './dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py'

num_levels = 5
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(out_indices=(0, 1, 2, 3), with_cp=False),
    neck=dict(in_channels=[196, 392, 784, 1568], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))))
