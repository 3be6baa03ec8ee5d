# DINO-4scale with a FasterViT-0 backbone on COCO, 12 epochs: the official FasterViT DINO recipe
# (see the FasterViT-4-21K-224 config) starting from the ImageNet-1K weights. The backbone is the
# classification network those weights were trained with (window_coord_norm='side', conv stages not
# padded): the official DINO code defines the carrier tokens of these variants otherwise (initial
# carriers reshaped so that channels and positions mix, their positional coordinates normalised by
# the number of carriers, their attention bias sized for 224x224 inputs), a network no published
# weights were trained with.
_base_ = './dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py'

checkpoint_file = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='0',
        window_coord_norm='side',
        pad_conv_stages=False,
        init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[128, 256, 512]))
