"""Generate a synthetic COCO-format shapes dataset (see ``mmfastervit.datasets.generate_coco``)."""
from mmfastervit.datasets import generate_coco
from mmfastervit.datasets.cli import generator_main

if __name__ == '__main__':
    generator_main(generate_coco, __doc__, default_out='data/toy_coco')
