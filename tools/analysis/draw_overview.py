"""Draw one overview picture of a demo run: the validation images painted by ``tools/test.py
--show-dir`` (ground truth beside prediction) in a grid under a title, above the training loss.

    python tools/analysis/draw_overview.py PAINTED_DIR TRAIN_WORK_DIR --out overview.png
        [--title TEXT] [--loss-curve loss.png] [--max-images 8] [--columns 2]
        [--cell-height 180]
"""
import argparse

from mmfastervit.analysis.overview import write_overview


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Grid of painted validation images and the training loss curve, one PNG')
    parser.add_argument('painted_dir', help='directory of images painted by tools/test.py '
                        '--show-dir (searched recursively)')
    parser.add_argument('train_work_dir', help='work directory of the training run')
    parser.add_argument('--out', required=True, help='overview PNG to write')
    parser.add_argument('--title', default='', help='line above the images, e.g. the metrics')
    parser.add_argument('--loss-curve', help='also write the loss curve alone to this PNG')
    parser.add_argument('--max-images', type=int, default=8, help='painted images to show')
    parser.add_argument('--columns', type=int, default=2, help='painted images per row')
    parser.add_argument('--cell-height', type=int, default=180,
                        help='height of each painted image in the grid (pixels)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    picture = write_overview(args.painted_dir, args.train_work_dir, args.out, args.title,
                             args.loss_curve, args.max_images, args.columns, args.cell_height)
    print(f'Wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})')
    if args.loss_curve:
        print(f'Wrote {args.loss_curve}')


if __name__ == '__main__':
    main()
