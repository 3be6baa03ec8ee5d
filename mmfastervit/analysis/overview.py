"""One picture of a training run: validation images painted with their ground truth beside the
model's predictions, tiled into a grid under a title line, above the training loss curve.

The painted images are the ones ``tools/test.py --show-dir`` writes: MMDetection's and
MMSegmentation's visualizers draw the ground truth on the left and the prediction on the right of
each. The loss comes from the ``vis_data/scalars.json`` files MMEngine writes in the training work
directory (one per run: a resumed run's records continue those of the run before it).
"""
import json
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

PathLike = Union[str, Path]
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
BACKGROUND = 255
GAP = 8  # pixels between grid cells and around the grid
DPI = 100


def painted_images(directory: PathLike, max_images: int) -> List[Path]:
    """The first ``max_images`` images under ``directory`` (searched recursively), by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f'no directory of painted images at {directory}')
    images = sorted(
        (path for path in directory.rglob('*') if path.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda path: path.name)
    if not images:
        raise FileNotFoundError(f'no {"/".join(IMAGE_SUFFIXES)} images under {directory}')
    return images[:max_images]


def training_losses(work_dir: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """(iterations, total loss) of every logged training iteration of the runs in ``work_dir``.

    A later run (``--resume``) replaces the records of the iterations it repeats.
    """
    scalar_files = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    losses = {}
    for scalar_file in scalar_files:
        for line in scalar_file.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record:
                losses[record.get('iter', record['step'])] = record['loss']
    if not losses:
        raise ValueError(f'no training loss in the */vis_data/scalars.json files of {work_dir} '
                         f'({len(scalar_files)} found): is it the work directory of a training '
                         'run with a logger hook?')
    iterations = np.array(sorted(losses))
    return iterations, np.array([losses[i] for i in iterations])


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'cannot read the image {path}')
    return image[..., ::-1]


def tile(images: Sequence[np.ndarray], columns: int, cell_height: int) -> np.ndarray:
    """RGB images scaled to ``cell_height`` rows (aspect kept), laid out row by row in
    ``columns`` columns; every cell is as wide as the widest scaled image, the image centred in
    it on a white background."""
    if not images:
        raise ValueError('no images to tile')
    if columns < 1 or cell_height < 1:
        raise ValueError(f'columns and cell_height must be positive, got {columns}, {cell_height}')
    scaled = [
        cv2.resize(image, (max(1, round(image.shape[1] * cell_height / image.shape[0])),
                           cell_height), interpolation=cv2.INTER_AREA) for image in images
    ]
    cell_width = max(image.shape[1] for image in scaled)
    columns = min(columns, len(scaled))
    rows = -(-len(scaled) // columns)
    grid = np.full((GAP + rows * (cell_height + GAP), GAP + columns * (cell_width + GAP), 3),
                   BACKGROUND, dtype=np.uint8)
    for index, image in enumerate(scaled):
        row, column = divmod(index, columns)
        top = GAP + row * (cell_height + GAP)
        left = GAP + column * (cell_width + GAP) + (cell_width - image.shape[1]) // 2
        grid[top:top + cell_height, left:left + image.shape[1]] = image
    return grid


def _render(figure) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _figure(width: int, height: int):
    # A bare Figure (no pyplot): nothing global changes, whatever the caller's backend.
    from matplotlib.figure import Figure
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI)


def loss_curve(iterations: np.ndarray, losses: np.ndarray, width: int = 640,
               height: int = 240) -> np.ndarray:
    """The training loss against the iteration, as a ``height`` x ``width`` RGB image."""
    figure = _figure(width, height)
    axes = figure.add_subplot()
    axes.plot(iterations, losses, color='tab:blue', linewidth=1.5)
    axes.set_xlabel('iteration')
    axes.set_ylabel('training loss')
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return _render(figure)


TITLE_FONT_SIZE = 12  # points


def _text_width(text: str) -> float:
    """Width in pixels of ``text`` drawn at the title's font size."""
    from matplotlib.textpath import TextPath
    return TextPath((0, 0), text, size=TITLE_FONT_SIZE).get_extents().width * DPI / 72


def _wrap(text: str, width: float) -> List[str]:
    """``text`` broken between words into lines no wider than ``width`` pixels where it can be
    (a single word wider than that keeps a line of its own)."""
    lines: List[str] = []
    for word in text.split():
        if lines and _text_width(f'{lines[-1]} {word}') <= width:
            lines[-1] = f'{lines[-1]} {word}'
        else:
            lines.append(word)
    return lines or ['']


def title_band(text: str, width: int) -> np.ndarray:
    """``text`` centred on a band as wide as the picture, on as many lines as it needs, so that a
    long title over a narrow grid is not cut off at its sides."""
    lines = _wrap(text, width - 2 * GAP)
    line_height = 1.4 * TITLE_FONT_SIZE * DPI / 72
    figure = _figure(width, round(len(lines) * line_height + 12))
    figure.text(0.5, 0.5, '\n'.join(lines), ha='center', va='center', fontsize=TITLE_FONT_SIZE,
                linespacing=1.4)
    return _render(figure)


def overview(images: Sequence[np.ndarray], iterations: np.ndarray, losses: np.ndarray,
             title: str, columns: int = 2, cell_height: int = 180) -> np.ndarray:
    """Title line, grid of painted images (:func:`tile`), then the loss curve, one RGB image."""
    grid = tile(images, columns, cell_height)
    width = grid.shape[1]
    curve = loss_curve(iterations, losses, width=width, height=max(200, width // 3))
    return np.concatenate([title_band(title, width), grid, curve], axis=0)


def write_png(path: PathLike, image: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f'could not write {path}')


def write_overview(painted_dir: PathLike, train_work_dir: PathLike, out_file: PathLike,
                   title: str = '', loss_curve_file: Optional[PathLike] = None,
                   max_images: int = 8,
                   columns: int = 2, cell_height: int = 180) -> np.ndarray:
    """Write :func:`overview` of the first ``max_images`` painted images of ``painted_dir`` and of
    the training run in ``train_work_dir`` to ``out_file`` (PNG), and the loss curve alone to
    ``loss_curve_file`` when given. Returns the overview."""
    images = [_read_rgb(path) for path in painted_images(painted_dir, max_images)]
    iterations, losses = training_losses(train_work_dir)
    picture = overview(images, iterations, losses, title, columns, cell_height)
    write_png(out_file, picture)
    if loss_curve_file is not None:
        write_png(loss_curve_file, loss_curve(iterations, losses))
    return picture
