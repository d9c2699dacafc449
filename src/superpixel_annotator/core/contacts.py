"""Which superpixels touch: found per superpixel when first asked, and kept with the
partition (read-only data of a case, filled in as strokes label new superpixels)."""

from __future__ import annotations

import threading
import weakref

import numba
import numpy as np

from .superpixels import COMPACT_DTYPES, Superpixels

_contacts_found: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_contacts_lock = threading.Lock()


def superpixel_contacts(superpixels: Superpixels, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The voxel count of each superpixel of ``ids``, and pairs of superpixels that touch
    (26 neighbours; air excluded), every pair of which one is in ``ids`` among them.

    Each superpixel's contacts are found in its bounding box when it is first asked about,
    and then kept with ``superpixels``: a stroke's smoothing asks about the labelled
    superpixels only, and mostly about those asked before.

    Parameters
    ----------
    superpixels : Superpixels
        The partition.
    ids : ndarray of int
        Superpixel ids (not 0).

    Returns
    -------
    sizes : ndarray of int64, the length of ``ids``
    pairs : ndarray of int, shape (2, n)
        Each contact ``(a, b)`` with ``a`` asked about so far, in both orders when ``b`` was
        asked about too.
    """
    with _contacts_lock:
        if superpixels not in _contacts_found:
            _contacts_found[superpixels] = [
                np.full(superpixels.count + 1, -1, np.int64),
                np.empty((2, 0), superpixels.compact_labels.dtype),
            ]
        known = _contacts_found[superpixels]
        new = ids[known[0][ids] < 0]
        if new.size:
            sizes, offsets, found = _contacts(superpixels.compact_labels, superpixels.extents, new)
            known[0][new] = sizes
            known[1] = np.concatenate([known[1], [np.repeat(new, np.diff(offsets)), found]], 1)
        return known[0][ids], known[1]


@numba.njit(cache=True, nogil=True)
def _contacts(labels, extents, ids):
    """For each of ``ids``: its voxel count, and the ids (not 0) of its voxels' 26
    neighbours that are not its own, as ``found[offsets[k]:offsets[k + 1]]``.

    Only voxels with a face neighbour of another id look around: a voxel of another id
    among the 26 neighbours of a voxel ``v`` is also among those of the last voxel of the
    superpixel on a path of face steps from ``v`` towards it."""
    nz, ny, nx = labels.shape
    last_seen_by = np.full(len(extents), -1, np.int64)
    sizes = np.zeros(len(ids), np.int64)
    offsets = np.zeros(len(ids) + 1, np.int64)
    found = np.empty(1024, labels.dtype)
    n_found = 0
    for k in range(len(ids)):
        own = ids[k]
        box = extents[own]
        for z in range(box[0, 0], box[0, 1]):
            for y in range(box[1, 0], box[1, 1]):
                for x in range(box[2, 0], box[2, 1]):
                    if labels[z, y, x] != own:
                        continue
                    sizes[k] += 1
                    if (
                        (z == 0 or labels[z - 1, y, x] == own)
                        and (z == nz - 1 or labels[z + 1, y, x] == own)
                        and (y == 0 or labels[z, y - 1, x] == own)
                        and (y == ny - 1 or labels[z, y + 1, x] == own)
                        and (x == 0 or labels[z, y, x - 1] == own)
                        and (x == nx - 1 or labels[z, y, x + 1] == own)
                    ):
                        continue
                    for a in range(max(z - 1, 0), min(z + 2, nz)):
                        for b in range(max(y - 1, 0), min(y + 2, ny)):
                            for c in range(max(x - 1, 0), min(x + 2, nx)):
                                other = labels[a, b, c]
                                if other == own or other == 0 or last_seen_by[other] == k:
                                    continue
                                last_seen_by[other] = k
                                if n_found == found.size:
                                    larger = np.empty(2 * found.size, found.dtype)
                                    larger[:n_found] = found
                                    found = larger
                                found[n_found] = other
                                n_found += 1
        offsets[k + 1] = n_found
    return sizes, offsets, found[:n_found].copy()


def load_kernels() -> None:
    """Compile, or load from numba's cache, the contacts' kernel for each dtype of
    :attr:`~.Superpixels.compact_labels`."""
    for dtype in COMPACT_DTYPES:
        _contacts(np.ones((1, 1, 1), dtype), np.zeros((2, 3, 2), np.int32), np.ones(1, np.int64))
