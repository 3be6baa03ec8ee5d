# FasterViT-4 on ImageNet-1K, official checkpoint:
# https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_224_1k.pth.tar
_base_ = './_base_/fastervit_in1k.py'

model = dict(arch='4')
