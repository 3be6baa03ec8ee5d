# DINO-4scale with a FasterViT-4-21K-224 backbone on COCO, 12 epochs: the recipe of the official
# FasterViT DINO detector (55.16 box AP), whose checkpoint this config evaluates and fine-tunes as
# published:
#     python tools/test.py CONFIG DINO_4scale_faster_vit_4_21k_224_ms_coco.pth
#     load_from = 'DINO_4scale_faster_vit_4_21k_224_ms_coco.pth'  # fine-tuning
# MMDetection's DINO-4scale, which follows the official DINO code (multi-scale + crop augmentation,
# AdamW lr 1e-4 with the backbone at 1e-5, weight decay 1e-4, gradient clipping at 0.1, 12 epochs
# with the drop at epoch 11, 2 images x 8 GPUs), with the official FasterViT settings: features at
# strides 8/16/32 (the official return_interm_indices [1, 2, 3]) with BatchNorm output norms, drop
# path 0.1, activation checkpointing (which the official config asks for and its FasterViT builder
# ignores; results are the same), denoising boxes noised at 0.4 (MMDetection's default is 1.0),
# and the backbone as the official DINO code defines it, which is what the checkpoint was trained
# with: window tokens' positional coordinates normalised by the number of tokens in a window
# (window_coord_norm='tokens'), conv stages run on the map padded to whole 7x7 windows
# (pad_conv_stages=True). The ImageNet-21K weights it starts from were trained with the
# classification definition; the official code fine-tuned them under this one all the same.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'

custom_imports = dict(imports=['mmfastervit'], allow_failed_imports=False)
# The official checkpoint file loads as published through load_from (converted on the fly);
# checkpoints also hold the torch random state, so that a resumed run continues exactly.
custom_hooks = [dict(type='OfficialDINOCheckpointHook'), dict(type='ResumeRandomStateHook')]

checkpoint_file = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_224_w14.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='FasterViT',
        arch='4-21k-224',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        with_cp=True,
        norm_cfg=dict(type='BN', requires_grad=True),
        window_coord_norm='tokens',
        pad_conv_stages=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    # the official input projections are convolutions with a bias, then GroupNorm
    neck=dict(in_channels=[392, 784, 1568], bias=True),
    dn_cfg=dict(box_noise_scale=0.4))
