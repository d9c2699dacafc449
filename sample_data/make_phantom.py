"""Make the bundled sample: a synthetic FLAIR-like head with a brain lesion.

Run ``python sample_data/make_phantom.py``; it writes two files next to itself:

``head_phantom.nii.gz``
    A uint8 MRI-like head: air with faint Rician noise, scalp, dark skull, a CSF rim
    with sulci and a midline fissure, grey matter brighter than white matter (as on
    FLAIR), dark ventricles, dark eyes in bright orbital fat, and a lesion: a bright,
    irregular tumour core inside a larger, moderately bright, irregular oedema. Tissue
    edges are slightly blurred, and a smooth bias field and noise are applied.
``head_phantom_lesion.nii.gz``
    The lesion's ground truth, uint8: 0 background, 1 oedema, 2 tumour core.

Both files share one affine: RAS axes (voxel axes run to the patient's right, anterior,
superior), 1.5 x 1.5 mm in-plane with 3 mm slices along superior-inferior, and an origin
offset, so that reading them into display order needs flips, a transpose and anisotropic
spacing. The output is deterministic (fixed seed).

The shapes are built in world millimetres (x to the patient's right, y anterior,
z superior), each from a signed distance function that is negative inside.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

SEED = 20240607
SHAPE = (116, 140, 78)  # voxels along x (right), y (anterior), z (superior)
SPACING = (1.5, 1.5, 3.0)  # mm
ORIGIN = (-88.5, -105.0, -118.5)  # world mm of voxel (0, 0, 0)
NOISE_SIGMA = 1.0  # Rician noise level in stored units (white matter is about 48)

# FLAIR-like intensities of each tissue class (before bias field and noise).
AIR, SCALP, SOFT, FAT, EYE, SKULL, CSF, GREY, WHITE, OEDEMA, CORE = range(11)
INTENSITY = np.array([0, 75, 44, 85, 15, 10, 13, 68, 48, 98, 130], dtype=np.float32)

OUT_DIR = Path(__file__).resolve().parent


def phantom_affine() -> np.ndarray:
    """The voxel-to-world affine shared by both output files (RAS, origin offset)."""
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = ORIGIN
    return affine


def world_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (mm) of every voxel centre, as broadcastable float32 arrays."""
    axes = [
        (np.arange(n, dtype=np.float32) * step + origin)
        for n, step, origin in zip(SHAPE, SPACING, ORIGIN, strict=True)
    ]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return x, y, z


def ellipsoid(grid, centre, semi_axes) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid, negative inside."""
    scaled = [(g - c) / a for g, c, a in zip(grid, centre, semi_axes, strict=True)]
    k0 = np.sqrt(sum(s**2 for s in scaled))
    k1 = np.sqrt(sum((s / a) ** 2 for s, a in zip(scaled, semi_axes, strict=True)))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def smooth_union(a: np.ndarray, b: np.ndarray, blend: float) -> np.ndarray:
    """Union of two signed distance fields with a rounded seam ``blend`` mm wide."""
    return -blend * np.logaddexp(-a / blend, -b / blend)


def smooth_noise(rng: np.random.Generator, scale_mm: float) -> np.ndarray:
    """Gaussian random field with unit standard deviation and a feature size in mm."""
    sigma = [scale_mm / step for step in SPACING]
    field = ndimage.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), sigma)
    return field / field.std()


def head_surface(grid, rng) -> np.ndarray:
    """The outside of the head: cranium, face and nose, with a slightly uneven skin."""
    cranium = ellipsoid(grid, (0, -4, 18), (72, 90, 82))
    face = ellipsoid(grid, (0, 22, -48), (62, 66, 58))
    nose = ellipsoid(grid, (0, 84, -38), (9, 10, 20))
    head = smooth_union(smooth_union(cranium, face, 8.0), nose, 4.0)
    return head + 1.5 * smooth_noise(rng, 12.0)


def brain_case(grid) -> np.ndarray:
    """The inner surface of the skull, which holds the brain."""
    return ellipsoid(grid, (0, -6, 22), (63, 81, 70))


def eyes(grid) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances to the eyeballs and to the orbital fat around them."""
    eye = np.minimum(
        ellipsoid(grid, (31, 56, -26), (12, 12, 12)), ellipsoid(grid, (-31, 56, -26), (12, 12, 12))
    )
    return eye, eye - 5.0


def cortex(depth: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Masks of cerebrospinal fluid and grey matter from the depth below the brain surface.

    Sulci are thin CSF sheets along the zero crossings of a smooth random field,
    reaching 8 to 14 mm deep and lined with grey matter; elsewhere the cortical
    ribbon under the 2.5 mm CSF rim is 3 to 6 mm thick.
    """
    folds = smooth_noise(rng, 7.0)
    sulcus_depth = 11.0 + 3.0 * smooth_noise(rng, 15.0)
    ribbon = 4.5 + 1.5 * smooth_noise(rng, 6.0)
    csf = (depth < 2.5) | ((np.abs(folds) < 0.12) & (depth < sulcus_depth))
    grey = (depth < 2.5 + ribbon) | ((np.abs(folds) < 0.5) & (depth < sulcus_depth + ribbon))
    return csf, grey


def midline_fissure(grid, depth: np.ndarray) -> np.ndarray:
    """The interhemispheric fissure: a thin CSF sheet between the hemispheres."""
    x, _, z = grid
    return (np.abs(x) < 1.5) & (depth < 28.0 + 0.2 * (z - 22.0))


def ventricles(grid) -> np.ndarray:
    """Lateral ventricles: two curved ellipsoids with frontal horns."""
    body = np.minimum(
        ellipsoid(grid, (9, -6, 16), (6, 26, 10)), ellipsoid(grid, (-9, -6, 16), (6, 26, 10))
    )
    horns = np.minimum(
        ellipsoid(grid, (12, 20, 8), (5, 9, 9)), ellipsoid(grid, (-12, 20, 8), (5, 9, 9))
    )
    return np.minimum(body, horns) < 0


def tumour_core(grid, rng) -> np.ndarray:
    """Signed distance to an irregular tumour core in the right frontoparietal lobe."""
    blobs = [
        ellipsoid(grid, (38, 18, 30), (12, 15, 12)),
        ellipsoid(grid, (45, 8, 36), (8, 11, 10)),
        ellipsoid(grid, (32, 26, 40), (8, 9, 8)),
        ellipsoid(grid, (41, 24, 22), (7, 8, 7)),
    ]
    core = blobs[0]
    for blob in blobs[1:]:
        core = smooth_union(core, blob, 3.0)
    return core + 2.5 * smooth_noise(rng, 5.0)


def oedema(core: np.ndarray, rng) -> np.ndarray:
    """Signed distance to the oedema: a wider, lobulated halo around the core."""
    reach = 11.0 + 5.0 * smooth_noise(rng, 10.0)
    return core - np.clip(reach, 4.0, None)


def bias_field(grid) -> np.ndarray:
    """A smooth multiplicative inhomogeneity, about +-12 % across the head."""
    x, y, z = grid
    return 1.0 + 0.0011 * x - 0.0009 * y + 0.0012 * z - 0.000012 * (x**2 + y**2)


def build() -> tuple[np.ndarray, np.ndarray]:
    """Build the image and lesion label arrays (source order, RAS axes)."""
    rng = np.random.default_rng(SEED)
    grid = world_grid()

    head = head_surface(grid, rng)
    brain = brain_case(grid)
    depth = -brain
    eye, orbit = eyes(grid)
    csf, grey = cortex(depth, rng)
    core = tumour_core(grid, rng)
    halo = oedema(core, rng)

    tissue = np.full(SHAPE, AIR, dtype=np.uint8)
    tissue[head < 0] = SOFT
    in_face = (head < -3.0) & (brain > 0)
    tissue[in_face & (orbit < 0)] = FAT
    tissue[in_face & (eye < 0)] = EYE
    tissue[(brain < 7.0) & (head < -5.0) & (orbit > 0)] = SKULL
    tissue[(head > -5.0) & (head < 0)] = SCALP
    inside = brain < 0
    tissue[inside] = WHITE
    tissue[inside & grey] = GREY

    in_parenchyma = inside & ~csf
    lesion = np.zeros(SHAPE, dtype=np.uint8)
    # Oedema follows white matter and reaches less far into the cortex.
    lesion[in_parenchyma & (((halo < 0) & ~grey) | (halo < -6.0))] = 1
    lesion[in_parenchyma & (core < 0)] = 2
    tissue[lesion == 1] = OEDEMA
    tissue[lesion == 2] = CORE

    fluid = inside & (csf | midline_fissure(grid, depth) | ventricles(grid))
    fluid &= lesion != 2
    lesion[fluid] = 0
    tissue[fluid] = CSF

    texture = 1.0 + 0.04 * smooth_noise(rng, 3.0)
    image = INTENSITY[tissue] * texture
    image = ndimage.gaussian_filter(image, [0.9 / step for step in SPACING])  # partial volume
    image *= bias_field(grid)
    real = image + NOISE_SIGMA * rng.standard_normal(SHAPE, dtype=np.float32)
    imag = NOISE_SIGMA * rng.standard_normal(SHAPE, dtype=np.float32)
    image = np.sqrt(real**2 + imag**2)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), lesion


def save(array: np.ndarray, path: Path, *, is_label: bool) -> None:
    """Write ``array`` with the phantom affine as both qform and sform.

    The file is gzipped at the highest level with no timestamp, so reruns give
    byte-identical files.
    """
    image = nib.Nifti1Image(array, phantom_affine())
    image.set_qform(phantom_affine(), code=1)
    image.set_sform(phantom_affine(), code=1)
    image.header.set_xyzt_units("mm")
    if is_label:
        image.header.set_intent("label")
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=9, mtime=0))


def main() -> None:
    """Build the phantom and write both files into this script's directory."""
    image, lesion = build()
    outputs = {"head_phantom.nii.gz": image, "head_phantom_lesion.nii.gz": lesion}
    for name, array in outputs.items():
        path = OUT_DIR / name
        save(array, path, is_label=name.endswith("_lesion.nii.gz"))
        print(f"{path.name}: shape {array.shape}, {path.stat().st_size / 1024:.0f} kB")
    counts = np.bincount(lesion.ravel(), minlength=3)
    print(f"lesion voxels: oedema {counts[1]}, tumour core {counts[2]}")


if __name__ == "__main__":
    main()
