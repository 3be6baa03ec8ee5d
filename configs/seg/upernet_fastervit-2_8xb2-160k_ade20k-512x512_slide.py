# Sliding-window testing (512x512 windows, stride 341) of the FasterViT-2 UperNet.
_base_ = './upernet_fastervit-2_8xb2-160k_ade20k-512x512.py'

model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
