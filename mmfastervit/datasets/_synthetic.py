"""Helpers shared by the synthetic dataset generators: image sizes, textures, output files."""
import shutil
from pathlib import Path
from typing import Iterable, Sequence, Tuple, Union

import cv2
import numpy as np

SideRange = Tuple[int, int]
ImageSize = Union[int, Tuple[int, int], Tuple[SideRange, SideRange]]

JPEG_QUALITY = 92


def _side_range(side: Union[int, Sequence[int]]) -> SideRange:
    if isinstance(side, (int, np.integer)):
        return int(side), int(side)
    low, high = (int(v) for v in side)
    if not 0 < low <= high:
        raise ValueError(f'invalid side range {side!r}')
    return low, high


def parse_image_size(image_size: ImageSize) -> Tuple[SideRange, SideRange]:
    """Normalise ``image_size`` to inclusive ``((h_min, h_max), (w_min, w_max))`` ranges.

    Accepts a single side length (square images), a fixed ``(h, w)`` pair, or a pair of
    ``(min, max)`` ranges sampled independently for every image.
    """
    if isinstance(image_size, (int, np.integer)):
        return _side_range(image_size), _side_range(image_size)
    if len(image_size) != 2:
        raise ValueError(f'image_size must be an int or a pair, got {image_size!r}')
    return _side_range(image_size[0]), _side_range(image_size[1])


def sample_image_size(rng: np.random.Generator,
                      size_ranges: Tuple[SideRange, SideRange]) -> Tuple[int, int]:
    (h_min, h_max), (w_min, w_max) = size_ranges
    return int(rng.integers(h_min, h_max + 1)), int(rng.integers(w_min, w_max + 1))


def split_rngs(seed: int, num_splits: int) -> list:
    """Independent generators per split, so the val set does not change when ``num_train`` does."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(num_splits)]


def value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1]: uniform noise on a grid with ``cell`` pixel spacing, upsampled."""
    grid_h = max(2, int(np.ceil(height / cell)) + 1)
    grid_w = max(2, int(np.ceil(width / cell)) + 1)
    coarse = rng.random((grid_h, grid_w), dtype=np.float32)
    noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(noise, 0.0, 1.0)


def blend(color_a, color_b, weight: np.ndarray) -> np.ndarray:
    """Per-pixel mix of two RGB colours into an HxWx3 float image (``weight`` 0: ``color_a``)."""
    color_a = np.asarray(color_a, dtype=np.float32)
    color_b = np.asarray(color_b, dtype=np.float32)
    return color_a + weight[..., None].astype(np.float32) * (color_b - color_a)


def directional_coordinate(height: int, width: int, angle: float) -> np.ndarray:
    """Pixel coordinate projected on the direction ``angle`` (radians), in pixels."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs * np.float32(np.cos(angle)) + ys * np.float32(np.sin(angle))


def linear_gradient(height: int, width: int, angle: float) -> np.ndarray:
    """Weight in [0, 1] that increases linearly along ``angle`` across the image."""
    coord = directional_coordinate(height, width, angle)
    return (coord - coord.min()) / max(float(np.ptp(coord)), 1e-6)


def stripes(height: int, width: int, period: float, angle: float, phase: float = 0.0) -> np.ndarray:
    """Sinusoidal stripes in [0, 1] with the given period (pixels) across direction ``angle``."""
    coord = directional_coordinate(height, width, angle)
    return 0.5 + 0.5 * np.sin(coord * np.float32(2 * np.pi / period) + np.float32(phase))


def random_color(rng: np.random.Generator, low: int = 0, high: int = 256) -> np.ndarray:
    return rng.integers(low, high, size=3).astype(np.float32)


def add_pixel_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    return image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def write_rgb_jpeg(path: Path, image: np.ndarray) -> None:
    """Write a float or uint8 RGB image as JPEG (fixed quality, so the bytes are reproducible)."""
    bgr = np.ascontiguousarray(to_uint8(image)[..., ::-1])
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f'could not write {path}')


def write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f'could not write {path}')


def prepare_outputs(dirs: Iterable[Path], files: Iterable[Path], overwrite: bool) -> None:
    """Create the output directories, refusing to mix a new dataset with an existing one.

    With ``overwrite=True`` exactly these directories and files are removed first; nothing else
    under the dataset root is touched.
    """
    dirs, files = list(dirs), list(files)
    existing = [d for d in dirs if d.is_dir() and any(d.iterdir())]
    existing += [f for f in files if f.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f'{existing[0]} already exists; pass overwrite=True to regenerate the dataset')
    for directory in dirs:
        if directory.is_dir():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
    for file in files:
        file.unlink(missing_ok=True)
        file.parent.mkdir(parents=True, exist_ok=True)
