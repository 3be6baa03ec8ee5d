"""Checks run on a config before anything is built or trained, so that a wrong setting fails in
seconds with a message naming it, not hours later (or never, silently).

- :func:`check_channels`: the neck/head ``in_channels`` match the FasterViT variant's outputs.
- :func:`check_datasets`: data roots, annotation files and listed images exist, and annotation
  files have the layout their dataset class reads (COCO json; ADE20K image/label folders).
- :func:`check_config`: both. In a distributed run ``build_runner`` runs it on the main process
  alone (a COCO train annotation file is a few GB of Python objects once loaded).
"""
import json
import os
import os.path as osp
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set

from mmengine.config import Config


class ConfigCheckError(ValueError):
    """A config setting that cannot work, found before training or testing starts."""


def _backbone_channels(backbone: dict) -> Optional[List[int]]:
    """Output channels of a FasterViT backbone config, in ``out_indices`` order."""
    if backbone.get('type') != 'FasterViT':
        return None
    from mmfastervit.models.fastervit import resolve_arch
    dim = resolve_arch(backbone.get('arch', '0'))['dim']
    return [dim * 2**i for i in backbone.get('out_indices', (0, 1, 2, 3))]


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_channels(cfg: Config) -> None:
    """Raise :class:`ConfigCheckError` if a neck or head reads channels the backbone lacks."""
    model = cfg.get('model', {})
    if 'module' in model:  # test-time augmentation wrapper
        model = model['module']
    channels = _backbone_channels(model.get('backbone', {}))
    if channels is None:
        return
    arch = model['backbone'].get('arch', '0')
    described = (f"FasterViT arch {arch!r} with out_indices "
                 f"{tuple(model['backbone'].get('out_indices', (0, 1, 2, 3)))} gives {channels}")
    neck = model.get('neck')
    for neck_cfg in _as_list(neck) if neck else []:
        if 'in_channels' in neck_cfg and list(_as_list(neck_cfg['in_channels'])) != channels:
            raise ConfigCheckError(
                f"model.neck.in_channels is {list(_as_list(neck_cfg['in_channels']))}, but "
                f'{described}: set in_channels={channels}')
        return  # heads read the neck's outputs
    for head_name in ('decode_head', 'auxiliary_head'):
        for head in _as_list(model.get(head_name) or []):
            if 'in_channels' not in head:
                continue
            index = head.get('in_index', -1)
            expected = ([channels[i] for i in index] if isinstance(index, (list, tuple))
                        else channels[index])
            got = head['in_channels']
            got = list(got) if isinstance(got, (list, tuple)) else got
            if got != expected:
                raise ConfigCheckError(
                    f'model.{head_name}.in_channels is {got} for in_index {index}, but '
                    f'{described}: set in_channels={expected}')


def _datasets(dataset_cfg: dict) -> Iterator[dict]:
    """The leaf dataset configs inside wrappers (RepeatDataset, ConcatDataset, ...)."""
    if 'datasets' in dataset_cfg:
        for child in dataset_cfg['datasets']:
            yield from _datasets(child)
    elif 'dataset' in dataset_cfg:
        yield from _datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def _join(root: str, path: str) -> str:
    return path if not root or osp.isabs(path) else osp.join(root, path)


def _first_missing_file(paths: Iterable[str]) -> Optional[str]:
    """The first of ``paths`` that is not a file (or a link to one), or None.

    Each folder is listed once instead of asking for every file: on a shared filesystem the
    ~118k ``isfile`` calls of COCO train2017 are as many round trips to the server, a listing a
    few hundred entries per round trip.
    """
    listings: Dict[str, Set[str]] = {}
    for path in paths:
        folder, name = osp.split(path)
        if folder not in listings:
            try:
                with os.scandir(folder or '.') as entries:
                    listings[folder] = {entry.name for entry in entries if entry.is_file()}
            except (FileNotFoundError, NotADirectoryError):
                listings[folder] = set()
        if name not in listings[folder]:
            return path
    return None


def _check_coco(dataset: dict, root: str) -> None:
    ann_file = _join(root, dataset.get('ann_file', ''))
    if not osp.isfile(ann_file):
        raise ConfigCheckError(f'annotation file {ann_file} does not exist')
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except (OSError, ValueError) as error:
        raise ConfigCheckError(f'annotation file {ann_file} is not valid JSON: {error}') from None
    missing = [key for key in ('images', 'annotations', 'categories')
               if not isinstance(coco, dict) or not isinstance(coco.get(key), list)]
    if missing:
        raise ConfigCheckError(f'annotation file {ann_file} is not COCO instance annotations: '
                               f'no {", ".join(missing)} list')
    image_dir = _join(root, dataset.get('data_prefix', {}).get('img', ''))
    if not osp.isdir(image_dir):
        raise ConfigCheckError(f'image folder {image_dir} (data_prefix.img) does not exist')
    for image in coco['images']:
        if 'file_name' not in image:
            raise ConfigCheckError(f'annotation file {ann_file}: image entry without file_name: '
                                   f'{image}')
    missing = _first_missing_file(osp.join(image_dir, image['file_name'])
                                  for image in coco['images'])
    if missing is not None:
        raise ConfigCheckError(f'image {missing}, listed in {ann_file}, does not exist')


def _check_segmentation_folders(dataset: dict, root: str) -> None:
    prefix = dataset.get('data_prefix', {})
    img_dir = _join(root, prefix.get('img_path', ''))
    seg_dir = _join(root, prefix.get('seg_map_path', ''))
    for name, folder in (('data_prefix.img_path', img_dir), ('data_prefix.seg_map_path', seg_dir)):
        if not osp.isdir(folder):
            raise ConfigCheckError(f'{name} folder {folder} does not exist')
    img_suffix = dataset.get('img_suffix', '.jpg')
    seg_suffix = dataset.get('seg_map_suffix', '.png')
    images = [f for f in os.listdir(img_dir) if f.endswith(img_suffix)]
    if not images:
        raise ConfigCheckError(f'image folder {img_dir} holds no *{img_suffix} images')
    image_of_label = {
        osp.join(seg_dir, image[:-len(img_suffix)] + seg_suffix): image for image in images
    }
    missing = _first_missing_file(image_of_label)
    if missing is not None:
        raise ConfigCheckError(f'label map {missing} for image '
                               f'{osp.join(img_dir, image_of_label[missing])} does not exist')


def check_config(cfg: Config, splits: Sequence[str] = ()) -> None:
    """All the checks: channels, then the data of the given splits."""
    check_channels(cfg)
    check_datasets(cfg, splits)


def check_datasets(cfg: Config, splits: Sequence[str] = ('train', 'val', 'test')) -> None:
    """Raise :class:`ConfigCheckError` naming the first missing or malformed data file of the
    given splits' datasets (those of known layout: COCO, ADE20K-style segmentation folders)."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or 'dataset' not in loader:
            continue
        for dataset in _datasets(loader['dataset']):
            kind = str(dataset.get('type', ''))
            root = dataset.get('data_root', '')
            if root and not osp.isdir(root):
                raise ConfigCheckError(f'{split} data_root {root} does not exist')
            if 'Coco' in kind:
                _check_coco(dataset, root)
            elif 'ADE20K' in kind or 'seg_map_path' in dataset.get('data_prefix', {}):
                _check_segmentation_folders(dataset, root)
