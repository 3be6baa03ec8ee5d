"""`make demo` and `make demo-seg` (scripts/demo_det.sh, scripts/demo_seg.sh) end to end, shortened
to two training iterations on a few generated images: they train, evaluate, draw the overview
picture and print the summary, and never write into a run directory that holds something."""
import cv2
import pytest

from mmfastervit.datasets import generate_ade, generate_coco
from tests.conftest import output_of, run_tool

pytestmark = pytest.mark.slow


def run_demo(script, data_dir, work_dir):
    return run_tool(script, env=dict(DATA_DIR=str(data_dir), WORK_DIR=str(work_dir), MAX_ITERS='2'))


def check_overview(output, work_dir):
    assert f'overview:    {work_dir}/overview.png' in output
    assert 'CPU:' in output and 'training and evaluation' in output
    overview = cv2.imread(str(work_dir / 'overview.png'))
    assert overview is not None and overview.shape[0] > 200
    assert cv2.imread(str(work_dir / 'loss_curve.png')) is not None


def test_detection_demo(tmp_path):
    data_dir, work_dir = tmp_path / 'toy_coco', tmp_path / 'run'
    generate_coco(data_dir, num_train=4, num_val=2, image_size=((96, 128), (96, 128)),
                  max_objects=3)
    output = output_of(run_demo('scripts/demo_det.sh', data_dir, work_dir))
    assert 'using the toy COCO dataset' in output
    assert 'box    ' in output and 'mask   ' in output
    check_overview(output, work_dir)

    before = sorted(path.relative_to(work_dir) for path in work_dir.rglob('*'))
    again = run_demo('scripts/demo_det.sh', data_dir, work_dir)
    assert again.returncode != 0
    assert f'work directory {work_dir} is not empty' in again.stderr
    assert sorted(path.relative_to(work_dir) for path in work_dir.rglob('*')) == before


def test_segmentation_demo(tmp_path):
    data_dir, work_dir = tmp_path / 'toy_ade', tmp_path / 'run'
    generate_ade(data_dir, num_train=4, num_val=2, image_size=((96, 128), (96, 128)))
    output = output_of(run_demo('scripts/demo_seg.sh', data_dir, work_dir))
    assert 'mIoU on the toy ADE20K validation set:' in output
    check_overview(output, work_dir)
