import json

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
