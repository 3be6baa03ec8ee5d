from pathlib import Path

import cv2
import numpy as np
import pytest

from mmfastervit.datasets import ADE_SCENE_CLASSES, generate_ade

NUM_TRAIN, NUM_VAL = 12, 4
SMALL_SIZES = ((96, 160), (96, 160))
SCENE_LABELS = sorted(ADE_SCENE_CLASSES.values())


def _file_bytes(root: Path) -> dict:
    files = sorted(p for p in root.rglob('*') if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _read_pairs(img_dir: Path, ann_dir: Path):
    for image_path in sorted(img_dir.glob('*.jpg')):
        image = cv2.imread(str(image_path))[..., ::-1].astype(np.float64)
        label_map = cv2.imread(str(ann_dir / f'{image_path.stem}.png'), cv2.IMREAD_UNCHANGED)
        yield image, label_map


@pytest.fixture(scope='module')
def ade_paths(tmp_path_factory):
    return generate_ade(tmp_path_factory.mktemp('ade'), num_train=NUM_TRAIN, num_val=NUM_VAL,
                        image_size=SMALL_SIZES, seed=5)


def test_scene_classes_are_ade20k_classes():
    from mmseg.datasets import ADE20KDataset

    classes = ADE20KDataset.METAINFO['classes']
    assert len(classes) == 150
    for name, value in ADE_SCENE_CLASSES.items():
        assert classes[value - 1] == name


def test_layout_and_label_values(ade_paths):
    root = ade_paths['root']
    seen = set()
    for split, num_images in (('training', NUM_TRAIN), ('validation', NUM_VAL)):
        img_dir, ann_dir = root / 'images' / split, root / 'annotations' / split
        stems = sorted(p.stem for p in img_dir.glob('*.jpg'))
        assert len(stems) == num_images
        assert sorted(p.stem for p in ann_dir.glob('*.png')) == stems
        for image, label_map in _read_pairs(img_dir, ann_dir):
            assert label_map.dtype == np.uint8 and label_map.shape == image.shape[:2]
            assert 96 <= label_map.shape[0] <= 160 and 96 <= label_map.shape[1] <= 160
            values = set(np.unique(label_map).tolist())
            assert values <= {0, *SCENE_LABELS}
            assert 0 in values and len(values) >= 3
            seen |= values
    assert len(seen) >= 8


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path, ade_paths):
    reference = _file_bytes(ade_paths['root'])
    again = generate_ade(tmp_path / 'again', num_train=NUM_TRAIN, num_val=NUM_VAL,
                         image_size=SMALL_SIZES, seed=5)
    assert _file_bytes(again['root']) == reference

    other = _file_bytes(generate_ade(tmp_path / 'other', num_train=NUM_TRAIN, num_val=NUM_VAL,
                                     image_size=SMALL_SIZES, seed=6)['root'])
    assert other.keys() == reference.keys()
    assert all(other[name] != reference[name] for name in reference)


def test_classes_are_recognisable_by_colour(ade_paths):
    """Images and label maps line up: per-class mean colours from train classify val pixels."""
    sums, counts = {}, {}
    for image, label_map in _read_pairs(ade_paths['train_img_dir'], ade_paths['train_ann_dir']):
        for label in np.unique(label_map):
            region = label_map == label
            sums[label] = sums.get(label, 0) + image[region].sum(axis=0)
            counts[label] = counts.get(label, 0) + region.sum()
    labels = [label for label in sorted(sums) if label != 0]
    means = np.stack([sums[label] / counts[label] for label in labels])

    correct = total = 0
    for image, label_map in _read_pairs(ade_paths['val_img_dir'], ade_paths['val_ann_dir']):
        keep = label_map > 0
        pixels = image[keep]
        nearest = np.argmin(((pixels[:, None, :] - means[None]) ** 2).sum(axis=-1), axis=1)
        correct += int((np.asarray(labels)[nearest] == label_map[keep]).sum())
        total += int(keep.sum())
    assert correct / total > 0.6


def test_overwrite(tmp_path):
    generate_ade(tmp_path, num_train=3, num_val=1, image_size=SMALL_SIZES)
    with pytest.raises(FileExistsError):
        generate_ade(tmp_path, num_train=2, num_val=1, image_size=SMALL_SIZES)
    paths = generate_ade(tmp_path, num_train=2, num_val=1, image_size=SMALL_SIZES, overwrite=True)
    assert len(list(paths['train_img_dir'].iterdir())) == 2
    assert len(list(paths['train_ann_dir'].iterdir())) == 2


def test_mmseg_ade20k_dataset_reduces_labels(ade_paths):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import LoadAnnotations

    dataset = ADE20KDataset(
        data_root=str(ade_paths['root']),
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=[dict(type=LoadImageFromFile), dict(type=LoadAnnotations, reduce_zero_label=True)])
    assert len(dataset) == NUM_VAL
    assert len(dataset.metainfo['classes']) == 150
    reduced_labels = {label - 1 for label in SCENE_LABELS}
    for index in range(len(dataset)):
        sample = dataset[index]
        seg_map = sample['gt_seg_map']
        assert seg_map.shape == sample['img'].shape[:2]
        values = set(np.unique(seg_map).tolist())
        assert 255 in values
        assert values - {255} and values - {255} <= reduced_labels
