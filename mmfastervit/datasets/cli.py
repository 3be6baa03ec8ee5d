"""Command line front end shared by ``tools/dataset/make_toy_*.py``."""
import argparse
from typing import Callable, Dict, Optional, Sequence, Tuple


def generator_main(generate: Callable[..., Dict], description: str, default_out: str,
                   argv: Optional[Sequence[str]] = None,
                   extra_options: Sequence[Tuple[str, dict]] = ()) -> Dict:
    """Parse the common generator options and ``extra_options`` (``(flag, add_argument
    keywords)``, passed to ``generate`` by their names), call ``generate`` and print what it
    wrote."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--out', default=default_out, help='dataset root directory')
    parser.add_argument('--num-train', type=int, default=64, help='number of training images')
    parser.add_argument('--num-val', type=int, default=16, help='number of validation images')
    parser.add_argument('--min-side', type=int, default=192, help='smallest image side (pixels)')
    parser.add_argument('--max-side', type=int, default=320, help='largest image side (pixels)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing dataset')
    extra_names = [parser.add_argument(flag, **keywords).dest for flag, keywords in extra_options]
    args = parser.parse_args(argv)

    side_range = (args.min_side, args.max_side)
    paths = generate(args.out, num_train=args.num_train, num_val=args.num_val,
                     image_size=(side_range, side_range), seed=args.seed, overwrite=args.overwrite,
                     **{name: getattr(args, name) for name in extra_names})
    print(f'Wrote {args.num_train} train and {args.num_val} val images to {paths["root"]}')
    for key, path in paths.items():
        if key != 'root':
            print(f'  {key}: {path}')
    return paths
