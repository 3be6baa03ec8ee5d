"""A small, deterministic dataset in the ADE20K layout: synthetic outdoor and indoor scenes.

Label maps use ADE20K's own 1-based class values (0 is "other"), so mmseg's ``ADE20KDataset`` with
its full 150-class metainfo and ``reduce_zero_label=True`` reads them unchanged. Each class has its
own colour family and texture, so the scenes are learnable; label-0 clutter is scattered on top.
"""
from pathlib import Path
from typing import Callable, Dict, List, Tuple, Union

import cv2
import numpy as np

from ._synthetic import (ImageSize, add_pixel_noise, blend, linear_gradient, parse_image_size,
                         prepare_outputs, random_color, sample_image_size, split_rngs, stripes,
                         value_noise, write_png, write_rgb_jpeg)

# Annotation values: ADE20K's 1-based class indices (mmseg's 0-based index plus one).
WALL, BUILDING, SKY, FLOOR, TREE, CEILING, ROAD, GRASS, PERSON, MOUNTAIN, WATER = (
    1, 2, 3, 4, 5, 6, 7, 10, 13, 17, 22)
OTHER = 0

# Annotation value of every class the scenes use.
ADE_SCENE_CLASSES: Dict[str, int] = dict(
    wall=WALL,
    building=BUILDING,
    sky=SKY,
    floor=FLOOR,
    tree=TREE,
    ceiling=CEILING,
    road=ROAD,
    grass=GRASS,
    person=PERSON,
    mountain=MOUNTAIN,
    water=WATER)

SPLIT_DIRS = {'train': 'training', 'val': 'validation'}
_OUTDOOR_PROBABILITY = 0.7
_PERSON_COLORS = ((180, 40, 40), (200, 120, 30), (120, 40, 150))

Texture = Callable[[np.random.Generator, int, int], np.ndarray]


def _jitter(rng: np.random.Generator, color, sigma: float = 12.0) -> np.ndarray:
    return np.asarray(color, dtype=np.float32) + rng.normal(0, sigma, 3).astype(np.float32)


def _vertical_weight(height: int, width: int) -> np.ndarray:
    return linear_gradient(height, width, np.pi / 2)


def _sky(rng, height, width):
    image = blend(_jitter(rng, (200, 225, 250)), _jitter(rng, (70, 130, 210)),
                  1 - _vertical_weight(height, width))
    clouds = np.clip(2.5 * value_noise(rng, height, width, cell=40) - 1.5, 0, 1)
    return image + clouds[..., None] * (245 - image)


def _mountain(rng, height, width):
    return blend(_jitter(rng, (105, 95, 85)), _jitter(rng, (155, 145, 130)),
                 value_noise(rng, height, width, cell=12))


def _building(rng, height, width):
    period_x, period_y = rng.uniform(8, 16), rng.uniform(10, 18)
    ys, xs = np.mgrid[0:height, 0:width]
    windows = ((xs % period_x) < period_x / 2) & ((ys % period_y) < period_y / 2)
    return blend(_jitter(rng, (145, 138, 130)), _jitter(rng, (55, 65, 90)),
                 windows.astype(np.float32))


def _tree(rng, height, width):
    return blend(_jitter(rng, (25, 70, 25)), _jitter(rng, (75, 135, 50)),
                 value_noise(rng, height, width, cell=5))


def _grass(rng, height, width):
    return blend(_jitter(rng, (60, 140, 40)), _jitter(rng, (125, 185, 70)),
                 value_noise(rng, height, width, cell=2.5))


def _road(rng, height, width):
    return add_pixel_noise(rng, np.broadcast_to(_jitter(rng, (72, 72, 78), 6), (height, width, 3)),
                           sigma=8)


def _water(rng, height, width):
    waves = stripes(height, width, period=rng.uniform(5, 10), angle=np.pi / 2 + rng.normal(0, 0.05))
    return blend(_jitter(rng, (20, 70, 140)), _jitter(rng, (70, 140, 195)), waves)


def _person(rng, height, width):
    color = _jitter(rng, _PERSON_COLORS[rng.integers(len(_PERSON_COLORS))])
    shading = 0.8 + 0.3 * value_noise(rng, height, width, cell=8)
    return color * shading[..., None]


def _wall(rng, height, width):
    color = _jitter(rng, (205, 192, 170))
    return color * (0.92 + 0.1 * value_noise(rng, height, width, cell=30))[..., None]


def _floor(rng, height, width):
    planks = stripes(
        height, width, period=rng.uniform(14, 24), angle=np.pi / 2 + rng.normal(0, 0.05))
    return blend(_jitter(rng, (115, 75, 40)), _jitter(rng, (165, 118, 72)), planks)


def _ceiling(rng, height, width):
    period = rng.uniform(16, 28)
    grid = ((stripes(height, width, period, 0.0) > 0.93)
            | (stripes(height, width, period, np.pi / 2) > 0.93))
    return blend(_jitter(rng, (238, 236, 230), 5), (150, 150, 150), grid.astype(np.float32))


def _other(rng, height, width):
    period = rng.uniform(4, 10)
    checker = (stripes(height, width, period, 0.0) > 0.5) ^ (stripes(height, width, period,
                                                                       np.pi / 2) > 0.5)
    return blend(random_color(rng), random_color(rng), checker.astype(np.float32))


_TEXTURES: Dict[int, Texture] = {
    OTHER: _other,
    WALL: _wall,
    BUILDING: _building,
    SKY: _sky,
    FLOOR: _floor,
    TREE: _tree,
    CEILING: _ceiling,
    ROAD: _road,
    GRASS: _grass,
    PERSON: _person,
    MOUNTAIN: _mountain,
    WATER: _water,
}


def _fill_polygon(label_map: np.ndarray, points, label: int) -> None:
    cv2.fillPoly(label_map, [np.round(np.asarray(points)).astype(np.int32)], label)


def _draw_person(label_map: np.ndarray, base_x: float, base_y: float, size: float) -> None:
    body_w, body_h = 0.16 * size, 0.36 * size
    center = (round(base_x), round(base_y - body_h))
    cv2.ellipse(label_map, center, (max(round(body_w), 1), max(round(body_h), 1)), 0, 0, 360,
                PERSON, -1)
    head_y = base_y - 2 * body_h - 0.1 * size
    cv2.circle(label_map, (round(base_x), round(head_y)), max(round(0.12 * size), 1), PERSON, -1)


def _draw_tree(rng: np.random.Generator, label_map: np.ndarray, base_x: float, base_y: float,
               size: float) -> None:
    trunk_w, trunk_h = 0.08 * size, 0.35 * size
    cv2.rectangle(label_map, (round(base_x - trunk_w), round(base_y - trunk_h)),
                  (round(base_x + trunk_w), round(base_y)), TREE, -1)
    crown_y = base_y - trunk_h - 0.25 * size
    for _ in range(rng.integers(3, 6)):
        offset_x, offset_y = rng.normal(0, 0.12 * size, 2)
        radius = rng.uniform(0.18, 0.3) * size
        cv2.circle(label_map, (round(base_x + offset_x), round(crown_y + offset_y)),
                   max(round(radius), 1), TREE, -1)


def _draw_standing(rng: np.random.Generator, label_map: np.ndarray, ground_y: int,
                   num_trees: int, num_people: int) -> None:
    """Trees and people on the ground, bigger when nearer (lower), drawn far to near."""
    height, width = label_map.shape
    objects: List[Tuple[float, float, str]] = []
    for kind, count in (('tree', num_trees), ('person', num_people)):
        for _ in range(count):
            objects.append((rng.uniform(ground_y + 2, height), rng.uniform(0, width), kind))
    for base_y, base_x, kind in sorted(objects):
        nearness = 0.3 + 0.7 * (base_y - ground_y) / max(height - ground_y, 1)
        if kind == 'tree':
            _draw_tree(rng, label_map, base_x, base_y, 0.6 * height * nearness)
        else:
            _draw_person(label_map, base_x, base_y, 0.4 * height * nearness)


def _outdoor_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    horizon = int(rng.uniform(0.35, 0.6) * height)
    label_map = np.full((height, width), GRASS, dtype=np.uint8)
    label_map[:horizon] = SKY
    if rng.random() < 0.5:
        ridge_x = np.linspace(0, width, rng.integers(3, 8))
        ridge_y = horizon - rng.uniform(0.05, 0.25, ridge_x.size) * height
        _fill_polygon(label_map, [(0, horizon), *zip(ridge_x, ridge_y), (width, horizon)], MOUNTAIN)
    if rng.random() < 0.6:
        for _ in range(rng.integers(1, 5)):
            left = rng.uniform(-0.1, 0.9) * width
            top = horizon - rng.uniform(0.1, 0.35) * height
            right = left + rng.uniform(0.1, 0.25) * width
            _fill_polygon(label_map, [(left, top), (right, top), (right, horizon), (left, horizon)],
                          BUILDING)
    if rng.random() < 0.5:
        center = (round(rng.uniform(0.2, 0.8) * width),
                  round(horizon + rng.uniform(0.1, 0.3) * (height - horizon)))
        axes = (round(rng.uniform(0.15, 0.35) * width), round(rng.uniform(0.08, 0.2) * height))
        cv2.ellipse(label_map, center, axes, 0, 0, 360, WATER, -1)
    if rng.random() < 0.6:
        vanish_x = rng.uniform(0.3, 0.7) * width
        bottom_x = rng.uniform(0.2, 0.8) * width
        half_bottom, half_top = rng.uniform(0.15, 0.3) * width, rng.uniform(0.01, 0.03) * width
        road = [(vanish_x - half_top, horizon), (vanish_x + half_top, horizon),
                (bottom_x + half_bottom, height), (bottom_x - half_bottom, height)]
        _fill_polygon(label_map, road, ROAD)
    _draw_standing(rng, label_map, horizon, num_trees=rng.integers(0, 4),
                   num_people=rng.integers(0, 3))
    return label_map


def _indoor_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    floor_line = int(rng.uniform(0.55, 0.75) * height)
    label_map = np.full((height, width), WALL, dtype=np.uint8)
    label_map[floor_line:] = FLOOR
    if rng.random() < 0.7:
        label_map[:int(rng.uniform(0.08, 0.2) * height)] = CEILING
    _draw_standing(rng, label_map, floor_line, num_trees=0, num_people=rng.integers(0, 4))
    return label_map


def _add_clutter(rng: np.random.Generator, label_map: np.ndarray) -> None:
    """A few "other" (label 0) blobs: random convex polygons anywhere in the image."""
    height, width = label_map.shape
    for _ in range(rng.integers(1, 3)):
        size = rng.uniform(0.06, 0.15) * min(height, width)
        center = rng.uniform((0, 0), (width, height))
        points = center + rng.uniform(-size, size, (8, 2))
        hull = cv2.convexHull(np.round(points).astype(np.int32))
        cv2.fillPoly(label_map, [hull], OTHER)


def _render(rng: np.random.Generator, label_map: np.ndarray) -> np.ndarray:
    height, width = label_map.shape
    image = np.zeros((height, width, 3), dtype=np.float32)
    for label in np.unique(label_map):
        region = label_map == label
        image[region] = _TEXTURES[int(label)](rng, height, width)[region]
    return add_pixel_noise(rng, image, sigma=4.0)


def _generate_split(rng: np.random.Generator, split: str, img_dir: Path, ann_dir: Path,
                    num_images: int, size_ranges) -> None:
    for index in range(1, num_images + 1):
        height, width = sample_image_size(rng, size_ranges)
        if rng.random() < _OUTDOOR_PROBABILITY:
            label_map = _outdoor_scene(rng, height, width)
        else:
            label_map = _indoor_scene(rng, height, width)
        _add_clutter(rng, label_map)
        stem = f'ADE_{split}_{index:08d}'
        write_rgb_jpeg(img_dir / f'{stem}.jpg', _render(rng, label_map))
        write_png(ann_dir / f'{stem}.png', label_map)


def generate_ade(root: Union[str, Path],
                 num_train: int = 64,
                 num_val: int = 16,
                 image_size: ImageSize = ((192, 320), (192, 320)),
                 seed: int = 0,
                 overwrite: bool = False) -> Dict[str, Path]:
    """Write synthetic scenes under ``root`` in the ADE20K directory layout.

    Layout: ``images/{training,validation}/ADE_*.jpg`` and ``annotations/{training,validation}/
    ADE_*.png`` (uint8 label maps with values in ``{0} | set(ADE_SCENE_CLASSES.values())``). The
    output is byte-identical across runs with the same arguments; train and val use independent
    random streams.

    Args:
        root: Dataset directory, created if needed.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Fixed ``(h, w)``, one side length, or ``((h_min, h_max), (w_min, w_max))``
            inclusive ranges sampled per image.
        seed: Random seed.
        overwrite: Replace a dataset previously generated at ``root`` instead of raising.

    Returns:
        Paths keyed ``root``, ``{split}_img_dir`` and ``{split}_ann_dir`` for split in train, val.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError('num_train and num_val must be >= 0')
    size_ranges = parse_image_size(image_size)
    if min(size_ranges[0][0], size_ranges[1][0]) < 32:
        raise ValueError(f'images must be at least 32 pixels per side, got {image_size!r}')
    root = Path(root)
    paths: Dict[str, Path] = {'root': root}
    for split, dir_name in SPLIT_DIRS.items():
        paths[f'{split}_img_dir'] = root / 'images' / dir_name
        paths[f'{split}_ann_dir'] = root / 'annotations' / dir_name
    prepare_outputs(dirs=[path for key, path in paths.items() if key != 'root'], files=[],
                    overwrite=overwrite)

    rngs = split_rngs(seed, len(SPLIT_DIRS))
    for split, rng, count in zip(SPLIT_DIRS, rngs, (num_train, num_val)):
        _generate_split(rng, split, paths[f'{split}_img_dir'], paths[f'{split}_ann_dir'], count,
                        size_ranges)
    return paths
