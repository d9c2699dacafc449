"""Scans larger and finer than BraTS, made reproducibly for the speed benchmarks.

- ``brats_fine(factor)``: the BraTS 2013 pat0005 FLAIR (``../shared``) resampled ``factor``
  times per axis (linear; the tumour mask nearest-neighbour): 480x480x310 at 0.5 mm for
  ``factor=2``, the same anatomy on 8 times the voxels.
- ``phantom_ct()``: the bundled head phantom (``sample_data/make_phantom.py``) resampled,
  at its true size, onto a CT-sized grid of 512x512x400 voxels of 0.7x0.7x1 mm (linear;
  its lesion nearest-neighbour).

Each returns the volume (display order, float32) and the lesion or tumour mask (bool, the
volume's shape). ``GRIDS`` names them with BraTS itself; ``write_grid`` writes one as NIfTI
files for the benchmarks that start the real server.
"""

from __future__ import annotations

from pathlib import Path

import _bench_common as common
import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from superpixel_annotator.core.superpixels import head_mask
from superpixel_annotator.core.volume import Volume, load_volume
from superpixel_annotator.web.app import sample_path

CT_SHAPE = (512, 512, 400)
"""The CT-sized grid of :func:`phantom_ct`, in source order (x, y, z)."""
CT_SPACING = (0.7, 0.7, 1.0)


def brats_fine(flair_path, truth_path, factor: int = 2) -> tuple[Volume, np.ndarray]:
    """A BraTS case resampled ``factor`` times per axis (see the module docstring)."""
    flair, truth = load_volume(flair_path), load_volume(truth_path)
    affine = flair.affine.copy()
    affine[:3, :3] /= factor
    affine[:3, 3] += affine[:3, :3] @ np.full(3, (1 - factor) / 2)  # the same voxel centres
    source = ndi.zoom(flair.to_source(flair.data), factor, order=1, grid_mode=True, mode="nearest")
    mask = ndi.zoom(
        flair.to_source(truth.data > 0).astype(np.uint8),
        factor,
        order=0,
        grid_mode=True,
        mode="nearest",
    )
    return _volume_and_mask(source, mask, affine, f"{flair.name}_x{factor}")


def phantom_ct() -> tuple[Volume, np.ndarray]:
    """The head phantom on a 512x512x400 grid of 0.7x0.7x1 mm (see the module docstring),
    its true size in a 358x358x400 mm field of view centred on it."""
    image, lesion = load_volume(sample_path()), load_volume(_lesion_path())
    source, source_mask = image.to_source(image.data), image.to_source(lesion.data > 0)
    spacing = np.abs(np.diag(image.affine)[:3])  # the phantom's affine is diagonal (RAS)
    centre = image.affine[:3, 3] + (np.array(source.shape) - 1) / 2 * spacing
    origin = centre - (np.array(CT_SHAPE) - 1) / 2 * np.array(CT_SPACING)
    scale, offset = np.array(CT_SPACING) / spacing, (origin - image.affine[:3, 3]) / spacing

    def resampled(array, order):
        return ndi.affine_transform(array, scale, offset, output_shape=CT_SHAPE, order=order)

    affine = np.diag([*CT_SPACING, 1.0])
    affine[:3, 3] = origin
    mask = resampled(source_mask.astype(np.uint8), 0)
    return _volume_and_mask(resampled(source.astype(np.float32), 1), mask, affine, "phantom_ct")


def _volume_and_mask(source, mask, affine, name) -> tuple[Volume, np.ndarray]:
    volume = Volume.from_source_array(source.astype(np.float32), affine, name)
    display_mask = Volume.from_source_array(mask.astype(np.float32), affine).data > 0
    return volume, display_mask


def _lesion_path():
    return sample_path().with_name("head_phantom_lesion.nii.gz")


def phantom_ct_head() -> tuple[Volume, np.ndarray]:
    """:func:`phantom_ct` with the whole head as the mask: strokes across it label large
    regions, as strokes on a large organ of a CT would."""
    volume, _ = phantom_ct()
    return volume, head_mask(volume.data)


GRIDS = {
    "brats": lambda: (load_volume(common.FLAIR), load_volume(common.TRUTH).data > 0),
    "brats-fine": lambda: brats_fine(common.FLAIR, common.TRUTH),
    "ct": phantom_ct,
    "ct-head": phantom_ct_head,
}
"""The grids by name, each a scan and the mask strokes go across (see ``GRID_TITLES``)."""
GRID_TITLES = {
    "brats": "BraTS 240x240x155, 1 mm",
    "brats-fine": "BraTS x2, 480x480x310, 0.5 mm",
    "ct": "phantom CT, 512x512x400, 0.7x0.7x1 mm, strokes across its lesion",
    "ct-head": "phantom CT, strokes across the head",
}


def write_grid(grid: str, folder: str | Path) -> tuple[Path, Path]:
    """The scan and mask of ``grid`` as NIfTI files in ``folder`` (BraTS: its own files)."""
    if grid == "brats":
        return common.FLAIR, common.TRUTH
    volume, mask = GRIDS[grid]()
    paths = Path(folder) / f"{grid}.nii.gz", Path(folder) / f"{grid}_mask.nii.gz"
    for array, path in ((volume.data, paths[0]), (mask.astype(np.uint8), paths[1])):
        nib.save(nib.Nifti1Image(volume.to_source(array), volume.affine), path)
    return paths
