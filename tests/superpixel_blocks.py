"""Hand-made superpixels for tests (a module of its own: tests/ has two conftest modules)."""

import numpy as np

from superpixel_annotator.core.superpixels import Superpixels


def block_superpixels(shape=(4, 12, 12), block=3) -> Superpixels:
    """Blocks of ``block`` voxels in-plane spanning all slices; the outer ring is background."""
    _, y, x = np.indices(shape)
    labels = 1 + (y // block) * (shape[2] // block) + (x // block)
    labels[:, 0, :] = labels[:, -1, :] = labels[:, :, 0] = labels[:, :, -1] = 0
    _, labels = np.unique(labels, return_inverse=True)
    return Superpixels.from_labels(labels.reshape(shape).astype(np.int32), params={})
