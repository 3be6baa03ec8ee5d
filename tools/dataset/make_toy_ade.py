"""Generate a synthetic ADE20K-layout scene dataset (see ``mmfastervit.datasets.generate_ade``)."""
from mmfastervit.datasets import generate_ade
from mmfastervit.datasets.cli import generator_main

if __name__ == '__main__':
    generator_main(generate_ade, __doc__, default_out='data/toy_ade')
