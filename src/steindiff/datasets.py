"""Image data that ships inside packages (no download), as tensors in [-1, 1].

- ``digits_images``: scikit-learn's 1,797 handwritten digits (8x8, values 0..16), optionally upscaled
  (bilinear) to 16x16, with a fixed train / test split so that "held-out" means the same rows everywhere
  (the digits classifier, the reference statistics and the denoiser training all use it).
- ``image_patches``: random crops of scikit-image's bundled natural images (RGB), one crop per seed.

Images are (N, C, H, W) float32 in [-1, 1] (the convention of EDM and of the samplers here).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import data as skimage_data
from torch import Tensor

__all__ = ["DIGITS_SPLITS", "SKIMAGE_IMAGES", "digits_images", "digits_split", "image_patches"]

DIGITS_SPLITS = ("train", "test", "all")
NUM_TEST_DIGITS = 297  # 1500 train, 297 test
_SPLIT_SEED = 0
# the natural RGB photographs of skimage.data (grey, synthetic and RGBA images are left out)
SKIMAGE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def digits_split(split: str = "train") -> np.ndarray:
    """Row indices of sklearn's digits in a split (a fixed permutation with seed 0)."""
    if split not in DIGITS_SPLITS:
        raise ValueError(f"split={split!r} is not accepted: expected one of {', '.join(DIGITS_SPLITS)}")
    order = np.random.default_rng(_SPLIT_SEED).permutation(1797)
    if split == "all":
        return np.sort(order)
    rows = order[NUM_TEST_DIGITS:] if split == "train" else order[:NUM_TEST_DIGITS]
    return np.sort(rows)


def digits_images(split: str = "train", size: int = 8, with_labels: bool = False):
    """(N, 1, size, size) digits in [-1, 1] (pixel 0..16 -> v / 8 - 1); size 8 or a multiple (bilinear upscale).

    With ``with_labels`` also returns the (N,) int64 class labels.
    """
    from sklearn.datasets import load_digits  # start-up: sklearn takes about 1 s to import

    if size < 8 or size % 8:
        raise ValueError(f"size={size!r} is not accepted: expected 8 or a multiple of 8")
    data = load_digits()
    rows = digits_split(split)
    images = torch.from_numpy(data.images[rows].astype(np.float32)).unsqueeze(1) / 8.0 - 1.0
    if size != 8:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = images.clamp(-1.0, 1.0)
    labels = torch.from_numpy(data.target[rows].astype(np.int64))
    return (images, labels) if with_labels else images


def _skimage_rgb(name: str) -> np.ndarray:
    image = np.asarray(getattr(skimage_data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def image_patches(num: int, size: int = 16, seed: int = 0, names: tuple[str, ...] = SKIMAGE_IMAGES) -> Tensor:
    """(num, 3, size, size) random crops of scikit-image's bundled RGB images, in [-1, 1].

    Crop i depends on (seed, i) only: an image chosen uniformly, then a uniform position in it.
    """
    if num < 1 or size < 1:
        raise ValueError(f"num={num!r} and size={size!r} must be positive")
    images = [_skimage_rgb(n) for n in names]
    rng = np.random.default_rng(seed)
    out = np.empty((num, size, size, 3), dtype=np.uint8)
    for i in range(num):
        image = images[int(rng.integers(len(images)))]
        top = int(rng.integers(image.shape[0] - size + 1))
        left = int(rng.integers(image.shape[1] - size + 1))
        out[i] = image[top:top + size, left:left + size]
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1.0
