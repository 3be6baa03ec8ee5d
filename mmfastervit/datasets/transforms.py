"""Classification transforms that MMCV lacks (it provides loading, resizing to a size and centre
cropping)."""
from typing import Sequence

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS
from mmengine.structures import BaseDataElement


@TRANSFORMS.register_module()
class ResizeShortSide(BaseTransform):
    """Resize an image, keeping its aspect ratio, so that its short side is ``size``.

    The long side becomes ``int(size * long / short)``, truncated as torchvision's ``Resize(int)``
    (which timm's evaluation transforms use) does, where MMCV's ``Resize(keep_ratio=True)`` rounds
    it: published accuracies are reproduced only with the same pixels.

    Args:
        size (int): Length of the short side after resizing.
        interpolation (str): See :func:`mmcv.imresize`. Default: 'bicubic'.
        backend (str): 'pillow' (as timm) or 'cv2'. Default: 'pillow'.
    """

    def __init__(self, size: int, interpolation: str = 'bicubic', backend: str = 'pillow'):
        super().__init__()
        if size <= 0:
            raise ValueError(f'size must be positive, got {size}')
        self.size = size
        self.interpolation = interpolation
        self.backend = backend

    def transform(self, results: dict) -> dict:
        img = results['img']
        height, width = img.shape[:2]
        if width <= height:
            new_width, new_height = self.size, int(self.size * height / width)
        else:
            new_width, new_height = int(self.size * width / height), self.size
        results['img'] = mmcv.imresize(img, (new_width, new_height),
                                       interpolation=self.interpolation, backend=self.backend)
        results['img_shape'] = (new_height, new_width)
        results['scale_factor'] = (new_width / width, new_height / height)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, interpolation={self.interpolation!r}, '
                f'backend={self.backend!r})')


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """Pack an image and its label for a classifier.

    ``inputs`` is the image as a CHW uint8 tensor (channel order as loaded); ``data_samples`` a
    :class:`BaseDataElement` with ``gt_label`` (a one-element tensor, when the sample has a label)
    and the ``meta_keys`` found in the results as metainfo.
    """

    def __init__(self, meta_keys: Sequence[str] = ('img_path', 'ori_shape', 'img_shape',
                                                  'scale_factor')):
        super().__init__()
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = BaseDataElement(
            metainfo={key: results[key] for key in self.meta_keys if key in results})
        if 'gt_label' in results:
            sample.gt_label = torch.tensor([results['gt_label']], dtype=torch.long)
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
