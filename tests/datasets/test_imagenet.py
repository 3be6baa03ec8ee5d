import os

import pytest
from mmengine.registry import DATASETS

from mmfastervit.datasets import ImageNet, imagenet_classes


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'wb').close()


def make_folders(root, counts):
    for wnid, count in counts.items():
        for i in range(count):
            touch(os.path.join(root, 'val', wnid, f'ILSVRC2012_val_{wnid}_{i}.JPEG'))


def test_class_folders_are_labelled_in_sorted_order(tmp_path):
    make_folders(tmp_path, {'n03000000': 1, 'n01000000': 2, 'n02000000': 3})
    touch(str(tmp_path / 'val' / 'n01000000' / 'notes.txt'))
    dataset = DATASETS.build(dict(type='ImageNet', data_root=str(tmp_path)))
    labels = [dataset.get_data_info(i)['gt_label'] for i in range(len(dataset))]
    folders = [os.path.basename(os.path.dirname(dataset.get_data_info(i)['img_path']))
               for i in range(len(dataset))]
    assert labels == [0, 0, 1, 1, 1, 2]
    assert folders == ['n01000000'] * 2 + ['n02000000'] * 3 + ['n03000000']
    assert dataset.metainfo['classes'] == ('n01000000', 'n02000000', 'n03000000')


def test_thousand_class_folders_get_the_imagenet_names(tmp_path):
    make_folders(tmp_path, {f'n{i:08d}': 1 for i in range(1000)})
    dataset = ImageNet(data_root=str(tmp_path))
    classes = dataset.metainfo['classes']
    assert len(classes) == 1000
    assert classes[0] == 'tench, Tinca tinca'
    assert classes[1] == 'goldfish, Carassius auratus'
    assert classes[999] == 'toilet tissue, toilet paper, bathroom tissue'
    assert dataset.get_data_info(999)['gt_label'] == 999


def test_custom_classes_must_match_the_folders(tmp_path):
    make_folders(tmp_path, {'a': 1, 'b': 1})
    dataset = ImageNet(data_root=str(tmp_path), metainfo=dict(classes=('cat', 'dog')))
    assert dataset.metainfo['classes'] == ('cat', 'dog')
    with pytest.raises(ValueError, match='3 classes but .* has 2 class folders'):
        ImageNet(data_root=str(tmp_path), metainfo=dict(classes=('cat', 'dog', 'fish')))


def test_annotation_file_layout(tmp_path):
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'val.txt').write_text(
        'ILSVRC2012_val_00000001.JPEG 65\nsub dir/ILSVRC2012_val_00000002.JPEG 970\n\n')
    os.makedirs(tmp_path / 'val')
    dataset = ImageNet(data_root=str(tmp_path), ann_file='meta/val.txt')
    assert len(dataset) == 2
    assert dataset.get_data_info(0)['img_path'] == str(tmp_path / 'val' /
                                                       'ILSVRC2012_val_00000001.JPEG')
    assert dataset.get_data_info(1)['img_path'] == str(tmp_path / 'val' / 'sub dir' /
                                                       'ILSVRC2012_val_00000002.JPEG')
    assert [dataset.get_data_info(i)['gt_label'] for i in range(2)] == [65, 970]
    assert dataset.metainfo['classes'] == imagenet_classes()


@pytest.mark.parametrize('line', ['image.JPEG 1000', 'image.JPEG -1', 'image.JPEG', 'image.JPEG x'])
def test_annotation_file_with_a_bad_line_raises(tmp_path, line):
    os.makedirs(tmp_path / 'val')
    (tmp_path / 'val.txt').write_text(f'ok.JPEG 0\n{line}\n')
    with pytest.raises(ValueError, match=r'val.txt:2: expected "<image path> <label>"'):
        ImageNet(data_root=str(tmp_path), ann_file='val.txt')


def test_missing_and_empty_data_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match='image folder .*val.* does not exist'):
        ImageNet(data_root=str(tmp_path / 'nowhere'))
    os.makedirs(tmp_path / 'val')
    with pytest.raises(FileNotFoundError, match='holds no class folders'):
        ImageNet(data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match='annotation file .*missing.txt.* does not exist'):
        ImageNet(data_root=str(tmp_path), ann_file='missing.txt')
    (tmp_path / 'empty.txt').write_text('\n')
    with pytest.raises(ValueError, match='lists no images'):
        ImageNet(data_root=str(tmp_path), ann_file='empty.txt')
    make_folders(tmp_path, {'n01000000': 1})
    os.makedirs(tmp_path / 'val' / 'n02000000')
    touch(str(tmp_path / 'val' / 'n02000000' / 'readme.txt'))
    with pytest.raises(FileNotFoundError, match='1 class folders .* hold no images .*: n02000000'):
        ImageNet(data_root=str(tmp_path))


def test_imagenet_class_names_are_the_standard_list():
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert classes[207] == 'golden retriever'
    assert classes[281] == 'tabby, tabby cat'
    assert all(name and name == name.strip() for name in classes)
