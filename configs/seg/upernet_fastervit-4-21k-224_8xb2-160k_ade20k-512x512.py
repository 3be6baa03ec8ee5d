# UperNet + FasterViT-4 pre-trained on ImageNet-21K (224 px) on ADE20K; widths and recipe of the
# FasterViT-4 config.
_base_ = './upernet_fastervit-4_8xb2-160k_ade20k-512x512.py'

checkpoint_file = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_224_w14.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(arch='4-21k-224', drop_path_rate=0.42, init_cfg=dict(checkpoint=checkpoint_file)))
