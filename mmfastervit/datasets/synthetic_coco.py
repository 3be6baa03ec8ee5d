"""A small, deterministic COCO-format instance segmentation dataset: shapes on textured or plain
backgrounds.

Every image holds 1 to ``max_objects`` non-overlapping shapes, so each polygon is exactly the
visible region of its object. Polygons are in COCO's continuous pixel coordinates (pixel ``(i, j)``
covers ``[i, i + 1) x [j, j + 1)``) and are painted with the convention pycocotools rasterises
with, so the painted shapes, the masks and ``area`` (pixel count of the rasterised polygon) agree.
"""
import json
from pathlib import Path
from typing import Callable, Dict, List, Tuple, Union

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ._synthetic import (ImageSize, add_pixel_noise, blend, linear_gradient, parse_image_size,
                         prepare_outputs, random_color, sample_image_size, split_rngs, stripes,
                         value_noise, write_rgb_jpeg)

SHAPE_CLASSES = ('circle', 'triangle', 'rectangle', 'star', 'cross')

SPLITS = ('train', 'val')
# Sub-pixel precision of cv2.fillPoly: vertices are passed multiplied by 2**_SUBPIXEL_BITS.
_SUBPIXEL_BITS = 4
# Smallest colour distance between a shape and the background under it, so shapes stay visible.
_MIN_CONTRAST = 80.0


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    return points @ np.array([[cos, sin], [-sin, cos]])


def _regular_polygon(num_vertices: int, radius: float, rotation: float) -> np.ndarray:
    angles = rotation + 2 * np.pi * np.arange(num_vertices) / num_vertices
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _angle(rng: np.random.Generator, period: float, upright: bool,
           upright_angle: float = 0.0) -> float:
    """``upright_angle`` for an upright shape, else a random rotation in ``[0, period)``."""
    return upright_angle if upright else rng.uniform(0, period)


# Upright triangles and stars point up (image y grows downwards); upright rectangles and crosses
# are axis-aligned.
_POINTING_UP = -np.pi / 2


def _circle(rng: np.random.Generator, radius: float, upright: bool) -> np.ndarray:
    return _regular_polygon(32, radius, 0.0)


def _triangle(rng: np.random.Generator, radius: float, upright: bool) -> np.ndarray:
    return _regular_polygon(3, radius, _angle(rng, 2 * np.pi, upright, _POINTING_UP))


def _rectangle(rng: np.random.Generator, radius: float, upright: bool) -> np.ndarray:
    # The half-diagonal is the radius, so the rectangle fits the same circle as the other shapes.
    diagonal_angle = np.arctan(rng.uniform(0.45, 1.0))
    half_w, half_h = radius * np.cos(diagonal_angle), radius * np.sin(diagonal_angle)
    corners = np.array([[half_w, half_h], [-half_w, half_h], [-half_w, -half_h], [half_w, -half_h]])
    return _rotate(corners, _angle(rng, np.pi, upright))


def _star(rng: np.random.Generator, radius: float, upright: bool) -> np.ndarray:
    points = _regular_polygon(10, radius, _angle(rng, 2 * np.pi, upright, _POINTING_UP))
    points[1::2] *= 0.45
    return points


def _cross(rng: np.random.Generator, radius: float, upright: bool) -> np.ndarray:
    arm = 0.32 * radius
    reach = np.sqrt(radius**2 - arm**2)
    quarter = np.array([[arm, reach], [arm, arm], [reach, arm]])
    outline = np.concatenate([_rotate(quarter, -k * np.pi / 2) for k in range(4)])
    return _rotate(outline, _angle(rng, np.pi / 2, upright))


_SHAPE_BUILDERS: Dict[str, Callable[[np.random.Generator, float, bool], np.ndarray]] = {
    'circle': _circle,
    'triangle': _triangle,
    'rectangle': _rectangle,
    'star': _star,
    'cross': _cross,
}


def _plain_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Two random colours mixed by a linear gradient, with a little pixel noise."""
    weight = linear_gradient(height, width, rng.uniform(0, np.pi))
    image = blend(random_color(rng), random_color(rng), weight)
    return add_pixel_noise(rng, image, sigma=rng.uniform(2, 6))


def _textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Two random colours mixed by a gradient, stripes, smooth noise or a checkerboard."""
    angle = rng.uniform(0, np.pi)
    kind = rng.integers(4)
    if kind == 0:
        weight = linear_gradient(height, width, angle)
    elif kind == 1:
        weight = stripes(height, width, period=rng.uniform(6, 40), angle=angle)
    elif kind == 2:
        weight = value_noise(rng, height, width, cell=rng.uniform(6, 48))
    else:
        period = rng.uniform(12, 48)
        checker = ((stripes(height, width, period, angle) > 0.5)
                   ^ (stripes(height, width, period, angle + np.pi / 2) > 0.5))
        weight = checker.astype(np.float32)
    image = blend(random_color(rng), random_color(rng), weight)
    illumination = 0.8 + 0.4 * value_noise(rng, height, width, cell=max(height, width) / 2)
    return add_pixel_noise(rng, image * illumination[..., None], sigma=rng.uniform(3, 12))


_BACKGROUND_PAINTERS = {'textured': _textured_background, 'plain': _plain_background}
BACKGROUNDS = tuple(_BACKGROUND_PAINTERS)


def _place_shapes(rng: np.random.Generator, height: int, width: int, max_objects: int,
                  object_size: Tuple[float, float],
                  upright: bool) -> List[Tuple[int, np.ndarray]]:
    """Sample ``(class index, polygon)`` pairs with disjoint bounding circles inside the image."""
    short_side = min(height, width)
    min_radius = max(8.0, object_size[0] * short_side)
    max_radius = max(min_radius, object_size[1] * short_side)
    placed_circles: List[Tuple[float, float, float]] = []
    shapes = []
    for _ in range(rng.integers(1, max_objects + 1)):
        label = int(rng.integers(len(SHAPE_CLASSES)))
        radius = rng.uniform(min_radius, max_radius)
        for _attempt in range(30):
            cx = rng.uniform(radius + 1, width - radius - 1)
            cy = rng.uniform(radius + 1, height - radius - 1)
            if all(np.hypot(cx - x, cy - y) >= radius + r + 2 for x, y, r in placed_circles):
                break
        else:
            continue
        placed_circles.append((cx, cy, radius))
        outline = _SHAPE_BUILDERS[SHAPE_CLASSES[label]](rng, radius, upright) + (cx, cy)
        shapes.append((label, np.round(outline, 2)))
    return shapes


def _paint_shape(rng: np.random.Generator, image: np.ndarray, polygon: np.ndarray) -> None:
    """Alpha-blend a shaded, slightly noisy shape into ``image`` in place."""
    height, width = image.shape[:2]
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    patch = image[y0:y1, x0:x1]
    patch_h, patch_w = patch.shape[:2]

    # cv2 puts pixel centres on integer coordinates, COCO on half-integers: shift by half a pixel.
    vertices = np.round((polygon - (x0, y0) - 0.5) * 2**_SUBPIXEL_BITS).astype(np.int32)
    coverage = np.zeros((patch_h, patch_w), dtype=np.uint8)
    cv2.fillPoly(coverage, [vertices], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
    alpha = coverage.astype(np.float32)[..., None] / 255.0

    under = patch[coverage > 127].mean(axis=0)
    color = random_color(rng)
    for _ in range(10):
        if np.linalg.norm(color - under) >= _MIN_CONTRAST:
            break
        color = random_color(rng)
    shading = 0.75 + 0.35 * linear_gradient(patch_h, patch_w, rng.uniform(0, 2 * np.pi))
    fill = add_pixel_noise(rng, color * shading[..., None], sigma=4.0)
    patch[...] = patch * (1 - alpha) + fill * alpha


def _annotation(polygon: np.ndarray, label: int, image_id: int, ann_id: int, height: int,
                width: int) -> dict:
    flat = [float(v) for v in polygon.reshape(-1)]
    rle = mask_utils.merge(mask_utils.frPyObjects([flat], height, width))
    x_min, y_min = polygon.min(axis=0)
    x_max, y_max = polygon.max(axis=0)
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=label + 1,
        segmentation=[flat],
        area=float(mask_utils.area(rle)),
        bbox=[float(x_min), float(y_min), round(float(x_max - x_min), 2),
              round(float(y_max - y_min), 2)],
        iscrowd=0)


def _generate_split(rng: np.random.Generator, image_dir: Path, num_images: int,
                    size_ranges, max_objects: int, object_size: Tuple[float, float],
                    background: str, upright: bool) -> dict:
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        height, width = sample_image_size(rng, size_ranges)
        image = _BACKGROUND_PAINTERS[background](rng, height, width)
        file_name = f'{image_id:06d}.jpg'
        for label, polygon in _place_shapes(rng, height, width, max_objects, object_size,
                                             upright):
            _paint_shape(rng, image, polygon)
            annotations.append(
                _annotation(polygon, label, image_id, len(annotations) + 1, height, width))
        write_rgb_jpeg(image_dir / file_name, image)
        images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
    categories = [
        dict(id=index + 1, name=name, supercategory='shape')
        for index, name in enumerate(SHAPE_CLASSES)
    ]
    return dict(images=images, annotations=annotations, categories=categories)


def generate_coco(root: Union[str, Path],
                  num_train: int = 64,
                  num_val: int = 16,
                  image_size: ImageSize = ((192, 320), (192, 320)),
                  max_objects: int = 6,
                  object_size: Tuple[float, float] = (0.06, 0.2),
                  background: str = 'textured',
                  upright: bool = False,
                  seed: int = 0,
                  overwrite: bool = False) -> Dict[str, Path]:
    """Write a synthetic COCO-style dataset of :data:`SHAPE_CLASSES` under ``root``.

    Layout: ``train/*.jpg``, ``val/*.jpg``, ``annotations/instances_{train,val}.json``. The output
    is a pure function of the arguments (byte-identical across runs); train and val use independent
    random streams, so changing ``num_train`` leaves the val set unchanged.

    Args:
        root: Dataset directory, created if needed.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Fixed ``(h, w)``, one side length, or ``((h_min, h_max), (w_min, w_max))``
            inclusive ranges sampled per image.
        max_objects: Upper bound on the shapes per image (at least one is always placed).
        object_size: ``(min, max)`` radius of a shape's bounding circle as a fraction of the
            image's short side (at least 8 pixels). A shape that finds no free place is left out.
        background: ``'textured'`` (gradients, stripes, smooth noise or checkerboards, uneven
            lighting, pixel noise) or ``'plain'`` (a two-colour gradient, little noise: an easier
            task).
        upright: Draw every shape in one orientation (triangles and stars pointing up,
            rectangles and crosses axis-aligned) instead of rotated at random: an easier task.
        seed: Random seed.
        overwrite: Replace a dataset previously generated at ``root`` instead of raising.

    Returns:
        Paths keyed ``root``, ``{split}_img_dir`` and ``{split}_ann_file`` for split in train, val.
    """
    if num_train < 0 or num_val < 0 or max_objects < 1:
        raise ValueError('num_train and num_val must be >= 0 and max_objects >= 1')
    if not 0 < object_size[0] <= object_size[1] < 0.5:
        raise ValueError('object_size must be (min, max) radii with 0 < min <= max < 0.5 (fractions '
                         f'of the short side), got {object_size!r}')
    if background not in BACKGROUNDS:
        raise ValueError(f'background must be one of {BACKGROUNDS}, got {background!r}')
    size_ranges = parse_image_size(image_size)
    if min(size_ranges[0][0], size_ranges[1][0]) < 32:
        raise ValueError(f'images must be at least 32 pixels per side, got {image_size!r}')
    root = Path(root)
    paths: Dict[str, Path] = {'root': root}
    for split in SPLITS:
        paths[f'{split}_img_dir'] = root / split
        paths[f'{split}_ann_file'] = root / 'annotations' / f'instances_{split}.json'
    prepare_outputs(dirs=[paths[f'{split}_img_dir'] for split in SPLITS],
                    files=[paths[f'{split}_ann_file'] for split in SPLITS],
                    overwrite=overwrite)

    for split, rng, count in zip(SPLITS, split_rngs(seed, len(SPLITS)), (num_train, num_val)):
        coco = _generate_split(rng, paths[f'{split}_img_dir'], count, size_ranges, max_objects,
                               object_size, background, upright)
        paths[f'{split}_ann_file'].write_text(json.dumps(coco))
    return paths
