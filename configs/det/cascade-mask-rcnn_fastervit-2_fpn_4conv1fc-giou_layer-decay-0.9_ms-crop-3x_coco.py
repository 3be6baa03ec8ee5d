# FasterViT-2 Cascade Mask R-CNN with layer-wise learning rate decay: the lr of backbone layer i
# (stem 0, then one layer per block) is scaled by 0.9 ** (num_layers + 1 - i), the neck and heads
# keep the full lr. See mmfastervit.engine.FasterViTLayerDecayOptimizerConstructor.
_base_ = './cascade-mask-rcnn_fastervit-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py'

optim_wrapper = dict(
    constructor='FasterViTLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise'))
