import json
import os

import pytest
from mmengine.config import Config

from mmfastervit.engine.config_checks import ConfigCheckError, check_channels, check_datasets

DET_CONFIG = 'configs/det/cascade-mask-rcnn_fastervit-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py'
SEG_CONFIG = 'configs/seg/upernet_fastervit-2_8xb2-160k_ade20k-512x512.py'


def test_shipped_configs_pass():
    check_channels(Config.fromfile(DET_CONFIG))
    check_channels(Config.fromfile(SEG_CONFIG))


def test_neck_channels_of_another_variant_are_named():
    cfg = Config.fromfile(DET_CONFIG)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    with pytest.raises(ConfigCheckError,
                       match=r"model.neck.in_channels is \[64, 128, 256, 512\], but FasterViT "
                             r"arch '2' .* gives \[96, 192, 384, 768\]: set in_channels="
                             r"\[96, 192, 384, 768\]"):
        check_channels(cfg)


def test_auxiliary_head_channels_are_checked_at_its_index():
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model.auxiliary_head.in_channels = 512
    with pytest.raises(ConfigCheckError, match=r'auxiliary_head.in_channels is 512 for in_index '
                                               r'2, .*set in_channels=384'):
        check_channels(cfg)


def coco_cfg(root, ann='annotations/train.json', img='train/'):
    return Config(dict(train_dataloader=dict(dataset=dict(
        type='CocoDataset', data_root=str(root), ann_file=ann, data_prefix=dict(img=img)))))


def test_missing_data_root(tmp_path):
    with pytest.raises(ConfigCheckError, match=f'train data_root {tmp_path}/nope does not exist'):
        check_datasets(coco_cfg(tmp_path / 'nope'))


def test_missing_annotation_file(tmp_path):
    with pytest.raises(ConfigCheckError, match='annotations/train.json does not exist'):
        check_datasets(coco_cfg(tmp_path))


def test_annotation_file_not_coco(tmp_path):
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations/train.json').write_text('{"images": []}')
    with pytest.raises(ConfigCheckError, match='is not COCO instance annotations: no annotations, '
                                               'categories list'):
        check_datasets(coco_cfg(tmp_path))
    (tmp_path / 'annotations/train.json').write_text('{"images": [')
    with pytest.raises(ConfigCheckError, match='train.json is not valid JSON'):
        check_datasets(coco_cfg(tmp_path))


def test_listed_image_absent(tmp_path):
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'train').mkdir()
    (tmp_path / 'train/a.jpg').write_bytes(b'x')
    coco = dict(images=[dict(id=1, file_name='a.jpg'), dict(id=2, file_name='b.jpg')],
                annotations=[], categories=[])
    (tmp_path / 'annotations/train.json').write_text(json.dumps(coco))
    with pytest.raises(ConfigCheckError, match=r'image .*train/b.jpg, listed in .*train.json, '
                                               r'does not exist'):
        check_datasets(coco_cfg(tmp_path))


def test_segmentation_label_map_absent(tmp_path):
    for folder in ('images/training', 'annotations/training'):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / 'images/training/x.jpg').write_bytes(b'x')
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='ADE20KDataset', data_root=str(tmp_path),
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))))
    with pytest.raises(ConfigCheckError, match='label map .*annotations/training/x.png for image'):
        check_datasets(cfg)
    (tmp_path / 'annotations/training/x.png').write_bytes(b'x')
    check_datasets(cfg)


def coco_with_images(root, file_names):
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    images = [dict(id=i, file_name=name) for i, name in enumerate(file_names)]
    coco = dict(images=images, annotations=[], categories=[])
    (root / 'annotations/train.json').write_text(json.dumps(coco))
    return coco_cfg(root)


def test_listed_images_cost_one_listing_per_folder_not_one_call_per_image(tmp_path, monkeypatch):
    """On a shared filesystem every stat is a round trip to the server: COCO train2017 would
    cost ~118k of them."""
    names = [f'{i:06d}.jpg' for i in range(500)]
    (tmp_path / 'train').mkdir()
    for name in names:
        (tmp_path / 'train' / name).write_bytes(b'')
    cfg = coco_with_images(tmp_path, names)
    calls = []
    stat = os.stat

    def counted_stat(path, *args, **kwargs):
        calls.append(path)
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, 'stat', counted_stat)
    check_datasets(cfg)
    assert len(calls) < 10, calls


def test_listed_images_in_subfolders_links_and_folders(tmp_path):
    for folder in ('train/a', 'train/b', 'elsewhere'):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / 'train/a/1.jpg').write_bytes(b'')
    (tmp_path / 'train/b/2.jpg').write_bytes(b'')
    (tmp_path / 'elsewhere/3.jpg').write_bytes(b'')
    (tmp_path / 'train/b/3.jpg').symlink_to(tmp_path / 'elsewhere/3.jpg')
    (tmp_path / 'train/b/4.jpg').mkdir()  # a folder is not an image
    (tmp_path / 'train/b/5.jpg').symlink_to(tmp_path / 'nothing.jpg')  # a broken link neither
    present = ['a/1.jpg', 'b/2.jpg', 'b/3.jpg', 'a/../b/2.jpg']
    check_datasets(coco_with_images(tmp_path, present))
    for absent in ('b/4.jpg', 'b/5.jpg', 'c/6.jpg', 'a/1.jpg/7.jpg'):
        with pytest.raises(ConfigCheckError, match=f'image .*train/{absent}, listed in'):
            check_datasets(coco_with_images(tmp_path, present + [absent]))
