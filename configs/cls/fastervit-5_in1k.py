# FasterViT-5 on ImageNet-1K, official checkpoint:
# https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_5_224_1k.pth.tar
_base_ = './_base_/fastervit_in1k.py'

model = dict(arch='5')
