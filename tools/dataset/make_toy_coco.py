"""Generate a synthetic COCO-format shapes dataset (see ``mmfastervit.datasets.generate_coco``)."""
from mmfastervit.datasets import generate_coco
from mmfastervit.datasets.cli import generator_main
from mmfastervit.datasets.synthetic_coco import BACKGROUNDS

if __name__ == '__main__':
    generator_main(
        generate_coco, __doc__, default_out='data/toy_coco',
        extra_options=[
            ('--max-objects', dict(type=int, default=6, help='most shapes per image')),
            ('--object-size', dict(type=float, nargs=2, default=(0.06, 0.2), metavar=('MIN', 'MAX'),
                                   help="shape radius range, as a fraction of the image's short side")),
            ('--background', dict(choices=BACKGROUNDS, default='textured',
                                  help='textured (harder) or plain (two-colour gradient) backgrounds')),
            ('--upright', dict(action='store_true',
                               help='shapes in one orientation instead of rotated at random (easier)')),
        ])
