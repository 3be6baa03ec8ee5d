# Cascade Mask R-CNN with a FasterViT-0 backbone on COCO: 4conv1fc GIoU box heads, DETR-style
# multi-scale and crop augmentation, 36 epochs. The recipe is MMDetection's ConvNeXt cascade 3x one
# with AdamW at lr 1e-4, fp32 (tools/train.py --amp for mixed precision on GPUs) and no weight
# decay on norms, positional MLPs (pos_mlp, attn.rel_pos_mlp) and layer scales (gamma*).
_base_ = 'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'  # noqa: E501

custom_imports = dict(imports=['mmfastervit'], allow_failed_imports=False)
# Checkpoints also hold the torch random state, so that a resumed run continues exactly.
custom_hooks = [dict(type='ResumeRandomStateHook')]

checkpoint_file = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='FasterViT',
        arch='0',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'pos_mlp': dict(decay_mult=0.),
            'gamma': dict(decay_mult=0.)
        }))

# Total batch 16 (8 GPUs x 2 images); tools/train.py --auto-scale-lr rescales lr for other sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
