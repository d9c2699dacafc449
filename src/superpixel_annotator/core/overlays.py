"""Images the views show, as PNG data URIs: slices through a window, thumbnails, annotation
colours, superpixel ids and boundaries."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .palette import LabelClass, hex_to_rgb

BOUNDARY_RGBA = (0, 255, 255, 110)


def label_palette(labels: Sequence[LabelClass]) -> np.ndarray:
    """An RGBA table with one row per label value 0..255; value 0 is transparent."""
    table = np.zeros((256, 4), dtype=np.uint8)
    for label in labels:
        table[label.value] = (*hex_to_rgb(label.color), 255)
    return table


def png_uri(
    image: np.ndarray, palette: np.ndarray | None = None, box: tuple[int, int] | None = None
) -> str:
    """Encode an image as a PNG data URI: the one encoder of every image the views show.

    Parameters
    ----------
    image : ndarray of uint8, shape (height, width) or (height, width, 3)
        Grey levels, palette indices (with ``palette``) or RGB.
    palette : ndarray of uint8, shape (n, 4), optional
        RGBA colour of each index of a 2D ``image``, written as a palette PNG with
        transparency.
    box : (width, height), optional
        Shrink the image to fit in this box, keeping its aspect ratio (thumbnails).

    Returns
    -------
    str
    """
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    options = {}
    if palette is not None:
        picture = picture.convert("P") if picture.mode != "P" else picture
        colors = int(image.max()) + 1
        picture.putpalette(palette[:colors, :3].tobytes())
        options["transparency"] = palette[:colors, 3].tobytes()
    if box is not None:
        picture.thumbnail(box)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", **options)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def indexed_png_uri(indexed: np.ndarray, rgba_table: np.ndarray) -> str | None:
    """Encode a 2D uint8 index image as a palette PNG data URI; ``None`` when all zero."""
    return png_uri(indexed, rgba_table) if indexed.any() else None


def windowed(image: np.ndarray, clim: Sequence[float]) -> np.ndarray:
    """An image as uint8 grey levels through the intensity window ``clim``."""
    low, high = min(clim), max(clim)
    scaled = (image.astype(np.float32) - low) * (255 / max(high - low, 1e-12))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def thumbnail_box(width: int, height: int, size: int) -> tuple[int, int]:
    """The box a ``width`` x ``height`` image is shrunk into for a thumbnail whose shorter side
    is about ``size`` (as dash-slicer sizes its thumbnails)."""
    if width > height:
        return int(size * width / height), size
    return size, int(size * height / width)


def id_section_uri(superpixel_section: np.ndarray) -> str:
    """A slice of superpixel ids as an RGB PNG data URI (id = r + 256 g + 65536 b)."""
    ids = np.asarray(superpixel_section, dtype=np.uint32)
    if ids.max(initial=0) >= 1 << 24:
        raise ValueError("superpixel ids do not fit in 24 bits")
    return png_uri(np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], axis=-1))


def boundary_section(superpixel_section: np.ndarray) -> np.ndarray:
    """Voxels of a 2D slice of superpixel ids that lie on a superpixel border (not in the air)."""
    edges = np.zeros(superpixel_section.shape, dtype=bool)
    vertical = superpixel_section[1:, :] != superpixel_section[:-1, :]
    horizontal = superpixel_section[:, 1:] != superpixel_section[:, :-1]
    edges[1:, :] |= vertical
    edges[:, 1:] |= horizontal
    return edges & (superpixel_section > 0)


def boundary_section_uri(superpixel_section: np.ndarray) -> str | None:
    """The superpixel borders of one slice as a PNG data URI (``None`` if there are none)."""
    table = np.zeros((2, 4), dtype=np.uint8)
    table[1] = BOUNDARY_RGBA
    return indexed_png_uri(boundary_section(superpixel_section).view(np.uint8), table)
