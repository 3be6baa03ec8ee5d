# UperNet + FasterViT-3 (ImageNet-1K weights) on ADE20K; recipe of the FasterViT-0 config.
_base_ = './upernet_fastervit-0_8xb2-160k_ade20k-512x512.py'

checkpoint_file = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_3_224_1k.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(arch='3', drop_path_rate=0.3, init_cfg=dict(checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
