"""ImageNet-style image classification dataset."""
import os
import os.path as osp
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
CLASSES_FILE = osp.join(osp.dirname(osp.abspath(__file__)), 'imagenet_classes.txt')


@lru_cache(maxsize=None)
def imagenet_classes() -> Tuple[str, ...]:
    """The names of the 1000 ImageNet-1K classes in the standard order (sorted WordNet ids), as
    listed by OpenMMLab's mmpretrain (``IMAGENET_CATEGORIES``)."""
    with open(CLASSES_FILE, encoding='utf-8') as f:
        return tuple(line.rstrip('\n') for line in f if line.strip())


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@DATASETS.register_module()
class ImageNet(BaseDataset):
    """ImageNet-style classification dataset in one of two layouts.

    - Class folders (no ``ann_file``): ``<data_root>/<data_prefix.img_path>/<wnid>/<image>``. A
      label is the index of its folder among the sorted folder names (torchvision's
      ``ImageFolder`` rule); for ImageNet-1K's 1000 WordNet ids this is the standard class order.
    - Annotation file: each line of ``ann_file`` is ``<image path> <label>``, the path relative to
      ``<data_root>/<data_prefix.img_path>``.

    ``metainfo['classes']`` defaults to the ImageNet-1K class names with an annotation file or 1000
    class folders, else to the folder names.

    Args:
        data_root (str): Default: 'data/imagenet'.
        data_prefix (dict): ``img_path``: the image folder under ``data_root``. Default: 'val'.
        ann_file (str): Annotation file (relative to ``data_root``); '' for class folders.
        metainfo (dict, optional): ``classes`` replaces the default class names.
        **kwargs: Other arguments of :class:`mmengine.dataset.BaseDataset` (``metainfo``,
            ``pipeline``, ``indices``, ...).
    """

    def __init__(self,
                 data_root: str = 'data/imagenet',
                 data_prefix: dict = dict(img_path='val'),
                 ann_file: str = '',
                 metainfo: Optional[dict] = None,
                 **kwargs):
        self.custom_classes = metainfo is not None and 'classes' in metainfo
        super().__init__(ann_file=ann_file, metainfo=metainfo, data_root=data_root,
                         data_prefix=data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        image_root = self.data_prefix['img_path']
        if not osp.isdir(image_root):
            raise FileNotFoundError(
                f'ImageNet image folder {image_root!r} does not exist (expected <wnid>/<image> '
                f'class folders in it, or the images an ann_file lists): set data_root and '
                f'data_prefix in the config')
        if self.ann_file:
            return self._load_annotation_file(image_root)
        return self._load_class_folders(image_root)

    def _set_classes(self, default: Sequence[str], num_classes: Optional[int] = None) -> None:
        if not self.custom_classes:
            self._metainfo['classes'] = tuple(default)
        classes = self._metainfo['classes']
        if num_classes is not None and len(classes) != num_classes:
            raise ValueError(f'metainfo has {len(classes)} classes but '
                             f'{self.data_prefix["img_path"]!r} has {num_classes} class folders')

    def _load_class_folders(self, image_root: str) -> List[dict]:
        wnids = sorted(entry.name for entry in os.scandir(image_root) if entry.is_dir())
        if not wnids:
            raise FileNotFoundError(
                f'{image_root!r} holds no class folders: expected <wnid>/<image> sub-folders')
        data_list, empty = [], []
        for label, wnid in enumerate(wnids):
            folder = osp.join(image_root, wnid)
            images = sorted(name for name in os.listdir(folder) if _is_image(name))
            if not images:
                empty.append(wnid)
            data_list.extend(
                dict(img_path=osp.join(folder, name), gt_label=label) for name in images)
        if empty:
            raise FileNotFoundError(
                f'{len(empty)} class folders of {image_root!r} hold no images '
                f'({", ".join(IMAGE_EXTENSIONS)}): {", ".join(empty[:10])}')
        names = imagenet_classes() if len(wnids) == len(imagenet_classes()) else wnids
        self._set_classes(names, num_classes=len(wnids))
        return data_list

    def _load_annotation_file(self, image_root: str) -> List[dict]:
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'ImageNet annotation file {self.ann_file!r} does not exist')
        self._set_classes(imagenet_classes())
        num_classes = len(self._metainfo['classes'])
        data_list = []
        with open(self.ann_file, encoding='utf-8') as f:
            for line_number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                path, _, label = line.strip().rpartition(' ')
                if not path or not label.isdigit() or int(label) >= num_classes:
                    raise ValueError(
                        f'{self.ann_file}:{line_number}: expected "<image path> <label>" with a '
                        f'label in 0..{num_classes - 1}, got {line.strip()!r}')
                data_list.append(dict(img_path=osp.join(image_root, path), gt_label=int(label)))
        if not data_list:
            raise ValueError(f'ImageNet annotation file {self.ann_file!r} lists no images')
        return data_list
