# UperNet + FasterViT-1 (ImageNet-1K weights) on ADE20K; recipe of the FasterViT-0 config.
_base_ = './upernet_fastervit-0_8xb2-160k_ade20k-512x512.py'

checkpoint_file = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_1_224_1k.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(arch='1', drop_path_rate=0.2, init_cfg=dict(checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[80, 160, 320, 640]),
    auxiliary_head=dict(in_channels=320))
