"""The overview picture of a demo run (mmfastervit.analysis.overview, tools/analysis/draw_overview.py)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmfastervit.analysis.overview import (GAP, painted_images, tile, training_losses,
                                           write_overview)
from tests.conftest import output_of, run_tool


def write_scalars(run_dir: Path, records: list) -> None:
    (run_dir / 'vis_data').mkdir(parents=True)
    (run_dir / 'vis_data' / 'scalars.json').write_text(
        ''.join(json.dumps(record) + '\n' for record in records))


@pytest.fixture
def train_work_dir(tmp_path) -> Path:
    """A training run's work directory as MMEngine leaves it: 30 logged iterations, then a
    validation record."""
    work_dir = tmp_path / 'train'
    records = [dict(lr=1e-3, loss=4.0 - 0.1 * i, iter=10 * i, step=10 * i) for i in range(1, 31)]
    records.append({'coco/bbox_mAP': 0.5, 'step': 300})
    write_scalars(work_dir / '20260101_000000', records)
    return work_dir


@pytest.fixture
def painted_dir(tmp_path) -> Path:
    """Five painted images of different sizes, one in a sub-directory, and a file that is not an
    image."""
    directory = tmp_path / 'painted'
    (directory / 'vis_image').mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {'a.jpg': (100, 240), 'b.png': (80, 300), 'c.jpg': (120, 200), 'd.png': (60, 60)}
    for name, (height, width) in sizes.items():
        cv2.imwrite(str(directory / name), rng.integers(0, 256, (height, width, 3), np.uint8))
    cv2.imwrite(str(directory / 'vis_image' / 'e.png'), np.zeros((50, 100, 3), np.uint8))
    (directory / 'notes.txt').write_text('not an image')
    return directory


def test_painted_images_are_taken_by_name_and_limited(painted_dir):
    assert [path.name for path in painted_images(painted_dir, 3)] == ['a.jpg', 'b.png', 'c.jpg']
    assert len(painted_images(painted_dir, 10)) == 5


def test_missing_or_empty_painted_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='no directory of painted images'):
        painted_images(tmp_path / 'absent', 8)
    with pytest.raises(FileNotFoundError, match='no .* images under'):
        painted_images(tmp_path, 8)


def test_tile_scales_to_the_cell_height_and_places_row_by_row():
    red = np.zeros((10, 20, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((20, 20, 3), np.uint8)
    blue[..., 2] = 255
    grid = tile([red, blue, red], columns=2, cell_height=20)
    # cells are as wide as the widest scaled image: red becomes 20x40
    assert grid.shape == (GAP + 2 * (20 + GAP), GAP + 2 * (40 + GAP), 3)
    assert (grid[GAP:GAP + 20, GAP:GAP + 40] == [255, 0, 0]).all()
    # blue (20x20) is centred in the second cell of the first row
    left = GAP + 40 + GAP + 10
    assert (grid[GAP:GAP + 20, left:left + 20] == [0, 0, 255]).all()
    assert (grid[GAP:GAP + 20, left - 10:left] == 255).all()
    # the third image starts the second row
    top = GAP + 20 + GAP
    assert (grid[top:top + 20, GAP:GAP + 40] == [255, 0, 0]).all()


def test_tile_rejects_nothing_to_tile():
    with pytest.raises(ValueError, match='no images'):
        tile([], columns=2, cell_height=10)


def test_training_losses_skip_validation_records_and_follow_resumed_runs(train_work_dir):
    iterations, losses = training_losses(train_work_dir)
    assert iterations.tolist() == list(range(10, 310, 10))
    assert losses[0] == pytest.approx(3.9)
    # a run resumed from iteration 200 logs iterations 210-400 again, later in time
    write_scalars(train_work_dir / '20260101_010000',
                  [dict(loss=1.0, iter=i, step=i) for i in range(210, 410, 10)])
    iterations, losses = training_losses(train_work_dir)
    assert iterations.tolist() == list(range(10, 410, 10))
    assert losses[iterations.tolist().index(200)] == pytest.approx(2.0)
    assert (losses[iterations >= 210] == 1.0).all()


def test_a_directory_without_training_loss_is_refused(tmp_path):
    write_scalars(tmp_path / '20260101_000000', [{'coco/bbox_mAP': 0.5, 'step': 1}])
    with pytest.raises(ValueError, match='no training loss'):
        training_losses(tmp_path)


def test_overview_holds_title_grid_and_loss_curve(painted_dir, train_work_dir, tmp_path):
    out, curve = tmp_path / 'out' / 'overview.png', tmp_path / 'loss.png'
    picture = write_overview(painted_dir, train_work_dir, out, title='box mAP 0.500',
                             loss_curve_file=curve, max_images=4, columns=2, cell_height=90)
    written = cv2.imread(str(out))[..., ::-1]
    np.testing.assert_array_equal(written, picture)
    grid = tile([cv2.imread(str(path))[..., ::-1] for path in painted_images(painted_dir, 4)],
                columns=2, cell_height=90)
    # the grid sits unchanged between the title and the loss curve, as wide as they are
    assert picture.shape[1] == grid.shape[1]
    rows = [r for r in range(picture.shape[0] - grid.shape[0] + 1)
            if np.array_equal(picture[r:r + grid.shape[0]], grid)]
    assert len(rows) == 1 and 0 < rows[0] and rows[0] + grid.shape[0] < picture.shape[0]
    # title and curve are drawn: not blank
    assert (picture[:rows[0]] < 128).any()
    assert (picture[rows[0] + grid.shape[0]:] < 128).any()
    assert cv2.imread(str(curve)).shape[0] > 100


def test_draw_overview_tool(painted_dir, train_work_dir, tmp_path):
    out = tmp_path / 'overview.png'
    output = output_of(
        run_tool('tools/analysis/draw_overview.py', painted_dir, train_work_dir, '--out', out,
                 '--title', 'mIoU 50.00', '--max-images', '2'))
    assert f'Wrote {out}' in output
    assert cv2.imread(str(out)) is not None


def test_long_title_wraps_inside_the_picture():
    from mmfastervit.analysis.overview import title_band
    title = ('box mAP 0.5910, mask mAP 0.6080 on the toy validation set (left: ground truth, '
             'right: prediction)')
    one_line, wrapped = title_band('box mAP 0.500', 400), title_band(title, 400)
    assert wrapped.shape[1] == 400 and wrapped.shape[0] > one_line.shape[0]
    ink = (wrapped < 128).any(axis=(0, 2))
    assert ink.any() and not ink[:GAP].any() and not ink[-GAP:].any()
