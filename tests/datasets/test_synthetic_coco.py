import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mmfastervit.datasets import SHAPE_CLASSES, generate_coco
from mmfastervit.datasets.synthetic_coco import BACKGROUNDS

NUM_TRAIN, NUM_VAL = 6, 3
SMALL_SIZES = ((96, 160), (96, 160))


def _file_bytes(root: Path) -> dict:
    files = sorted(p for p in root.rglob('*') if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


@pytest.fixture(scope='module')
def coco_paths(tmp_path_factory):
    return generate_coco(tmp_path_factory.mktemp('coco'), num_train=NUM_TRAIN, num_val=NUM_VAL,
                         image_size=SMALL_SIZES, seed=3)


def test_layout(coco_paths):
    root = coco_paths['root']
    assert coco_paths['train_ann_file'] == root / 'annotations' / 'instances_train.json'
    assert coco_paths['val_ann_file'] == root / 'annotations' / 'instances_val.json'
    assert len(list((root / 'train').glob('*.jpg'))) == NUM_TRAIN
    assert len(list((root / 'val').glob('*.jpg'))) == NUM_VAL


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path, coco_paths):
    again = generate_coco(tmp_path / 'again', num_train=NUM_TRAIN, num_val=NUM_VAL,
                          image_size=SMALL_SIZES, seed=3)
    reference = _file_bytes(coco_paths['root'])
    assert _file_bytes(again['root']) == reference

    other = _file_bytes(generate_coco(tmp_path / 'other', num_train=NUM_TRAIN, num_val=NUM_VAL,
                                      image_size=SMALL_SIZES, seed=4)['root'])
    assert other.keys() == reference.keys()
    train_json = 'annotations/instances_train.json'
    assert other[train_json] != reference[train_json]
    assert all(other[name] != reference[name] for name in reference if name.endswith('.jpg'))


def test_val_split_does_not_depend_on_num_train(tmp_path):
    few = generate_coco(tmp_path / 'few', num_train=1, num_val=2, image_size=SMALL_SIZES)
    many = generate_coco(tmp_path / 'many', num_train=4, num_val=2, image_size=SMALL_SIZES)
    assert _file_bytes(few['val_img_dir']) == _file_bytes(many['val_img_dir'])
    assert few['val_ann_file'].read_bytes() == many['val_ann_file'].read_bytes()


@pytest.mark.parametrize('split, num_images', [('train', NUM_TRAIN), ('val', NUM_VAL)])
def test_pycocotools_reads_consistent_annotations(coco_paths, split, num_images):
    coco = COCO(str(coco_paths[f'{split}_ann_file']))
    assert [coco.cats[i]['name'] for i in sorted(coco.cats)] == list(SHAPE_CLASSES)
    assert len(coco.imgs) == num_images
    for image_id, image_info in coco.imgs.items():
        height, width = image_info['height'], image_info['width']
        assert 96 <= height <= 160 and 96 <= width <= 160
        image = cv2.imread(str(coco_paths[f'{split}_img_dir'] / image_info['file_name']))
        assert image.shape == (height, width, 3)

        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert 1 <= len(anns) <= 6
        coverage = np.zeros((height, width), dtype=np.int32)
        for ann in anns:
            assert ann['iscrowd'] == 0
            assert ann['category_id'] in coco.cats
            assert len(ann['segmentation']) == 1
            polygon = np.asarray(ann['segmentation'][0]).reshape(-1, 2)
            assert len(polygon) >= 3
            assert polygon.min() >= 0
            assert polygon[:, 0].max() <= width and polygon[:, 1].max() <= height

            x, y, w, h = ann['bbox']
            np.testing.assert_allclose([x, y, x + w, y + h],
                                       [*polygon.min(axis=0), *polygon.max(axis=0)], atol=0.011)
            perimeter = np.hypot(*(polygon - np.roll(polygon, 1, axis=0)).T).sum()
            assert abs(ann['area'] - _shoelace(polygon)) <= 0.5 * perimeter

            mask = coco.annToMask(ann)
            assert mask.sum() == ann['area']
            coverage += mask
        # Objects never overlap, so each polygon is the whole visible region of its shape.
        assert coverage.max() == 1


def test_fixed_image_size(tmp_path):
    paths = generate_coco(tmp_path, num_train=3, num_val=0, image_size=(64, 96))
    images = json.loads(paths['train_ann_file'].read_text())['images']
    assert [(image['height'], image['width']) for image in images] == [(64, 96)] * 3


def test_overwrite(tmp_path):
    generate_coco(tmp_path, num_train=3, num_val=1, image_size=SMALL_SIZES)
    with pytest.raises(FileExistsError):
        generate_coco(tmp_path, num_train=2, num_val=1, image_size=SMALL_SIZES)
    (tmp_path / 'keep.txt').write_text('unrelated')

    paths = generate_coco(tmp_path, num_train=2, num_val=1, image_size=SMALL_SIZES, overwrite=True)
    assert sorted(p.name for p in paths['train_img_dir'].iterdir()) == ['000001.jpg', '000002.jpg']
    assert (tmp_path / 'keep.txt').read_text() == 'unrelated'


def test_mmdet_coco_dataset_loads_instances(coco_paths):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations

    dataset = CocoDataset(
        data_root=str(coco_paths['root']),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=dict(classes=SHAPE_CLASSES),
        pipeline=[
            dict(type=LoadImageFromFile),
            dict(type=LoadAnnotations, with_bbox=True, with_mask=True),
        ])
    coco = json.loads(coco_paths['train_ann_file'].read_text())
    instances_per_image = {image['id']: 0 for image in coco['images']}
    for ann in coco['annotations']:
        instances_per_image[ann['image_id']] += 1

    assert len(dataset) == NUM_TRAIN
    for index in range(len(dataset)):
        sample = dataset[index]
        num_instances = instances_per_image[sample['img_id']]
        height, width = sample['img'].shape[:2]
        assert sample['gt_bboxes'].tensor.shape == (num_instances, 4)
        assert sample['gt_bboxes_labels'].shape == (num_instances, )
        assert set(sample['gt_bboxes_labels'].tolist()) <= set(range(len(SHAPE_CLASSES)))
        masks = sample['gt_masks'].to_ndarray()
        assert masks.shape == (num_instances, height, width)
        assert masks.reshape(num_instances, -1).any(axis=1).all()
        assert not sample['gt_ignore_flags'].any()


def _extents(paths: dict) -> np.ndarray:
    """Each shape's larger box side as a fraction of its image's short side. A shape lies in its
    bounding circle, which holds its centre and one vertex on the circle: the larger side is at most
    the diameter and at least radius / sqrt(2)."""
    coco = json.loads(paths['train_ann_file'].read_text())
    short_side = {image['id']: min(image['height'], image['width']) for image in coco['images']}
    return np.array([max(ann['bbox'][2:]) / short_side[ann['image_id']]
                     for ann in coco['annotations']])


def test_object_size_and_count_bound_the_shapes(tmp_path):
    large = generate_coco(tmp_path / 'large', num_train=8, num_val=0, image_size=(160, 192),
                          max_objects=3, object_size=(0.2, 0.3))
    small = generate_coco(tmp_path / 'small', num_train=8, num_val=0, image_size=(160, 192),
                          max_objects=3, object_size=(0.06, 0.1))
    assert _extents(large).min() >= 0.2 / np.sqrt(2) and _extents(large).max() <= 2 * 0.3 + 0.01
    assert _extents(small).max() <= 2 * 0.1 + 0.01
    coco = json.loads(large['train_ann_file'].read_text())
    assert np.bincount([ann['image_id'] for ann in coco['annotations']]).max() <= 3


@pytest.mark.parametrize('object_size', [(0.0, 0.2), (0.3, 0.2), (0.1, 0.5)])
def test_impossible_object_sizes_are_refused(tmp_path, object_size):
    with pytest.raises(ValueError, match='object_size'):
        generate_coco(tmp_path, num_train=1, num_val=0, object_size=object_size)
    assert not (tmp_path / 'train').exists()


def _background_roughness(paths) -> float:
    """Mean absolute difference of horizontally adjacent background pixels (shapes masked out)."""
    coco = COCO(str(paths['train_ann_file']))
    differences = []
    for image_id, image in coco.imgs.items():
        pixels = cv2.imread(str(paths['train_img_dir'] / image['file_name'])).astype(np.float32)
        shapes = np.zeros(pixels.shape[:2], dtype=np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            shapes |= coco.annToMask(ann)
        background = cv2.dilate(shapes, np.ones((5, 5), np.uint8)) == 0
        pair = background[:, 1:] & background[:, :-1]
        differences.append(np.abs(np.diff(pixels, axis=1))[pair].mean())
    return float(np.mean(differences))


def test_plain_backgrounds_are_smoother_than_textured_ones(tmp_path):
    roughness = {
        background: _background_roughness(
            generate_coco(tmp_path / background, num_train=12, num_val=0, image_size=96,
                          max_objects=1, background=background))
        for background in BACKGROUNDS
    }
    assert roughness['plain'] < 0.5 * roughness['textured']


def test_unknown_background_is_refused(tmp_path):
    with pytest.raises(ValueError, match='background'):
        generate_coco(tmp_path, num_train=1, num_val=0, background='noisy')
    assert not (tmp_path / 'train').exists()


def _drawn_upright(label: str, polygon: np.ndarray) -> bool:
    """Rectangles and crosses with axis-parallel edges; triangles and stars with their topmost
    vertex above the middle of their box (polygons are rounded to 0.01 px)."""
    if label in ('rectangle', 'cross'):
        edges = np.roll(polygon, -1, axis=0) - polygon
        return bool(np.all(np.abs(edges).min(axis=1) < 0.03))
    if label in ('triangle', 'star'):
        top = polygon[np.argmin(polygon[:, 1])]
        return abs(top[0] - (polygon[:, 0].min() + polygon[:, 0].max()) / 2) < 0.03
    return True


def _upright_fraction(paths) -> dict:
    coco = json.loads(paths['train_ann_file'].read_text())
    upright = {}
    for ann in coco['annotations']:
        label = SHAPE_CLASSES[ann['category_id'] - 1]
        polygon = np.array(ann['segmentation'][0]).reshape(-1, 2)
        upright.setdefault(label, []).append(_drawn_upright(label, polygon))
    return {label: float(np.mean(flags)) for label, flags in upright.items()}


def test_upright_draws_every_shape_in_one_orientation(tmp_path):
    upright = _upright_fraction(
        generate_coco(tmp_path / 'upright', num_train=30, num_val=0, image_size=128,
                      upright=True))
    rotated = _upright_fraction(
        generate_coco(tmp_path / 'rotated', num_train=30, num_val=0, image_size=128))
    assert set(upright) == set(rotated) == set(SHAPE_CLASSES)
    assert all(fraction == 1.0 for fraction in upright.values())
    assert all(rotated[label] < 0.2 for label in ('triangle', 'rectangle', 'star', 'cross'))
