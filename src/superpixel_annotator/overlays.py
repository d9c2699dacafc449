"""Slice overlays as small PNG data URIs: annotation colours and superpixel boundaries."""

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


def indexed_png_uri(indexed: np.ndarray, rgba_table: np.ndarray) -> str | None:
    """Encode a 2D uint8 index image as a palette PNG data URI; ``None`` when all zero."""
    if not indexed.any():
        return None
    n_colors = int(indexed.max()) + 1
    image = Image.fromarray(np.ascontiguousarray(indexed, dtype=np.uint8), mode="P")
    image.putpalette(rgba_table[:n_colors, :3].tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=rgba_table[:n_colors, 3].tobytes())
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def section(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D slice ``index`` along ``axis`` of a 3D array, as a view (no copy)."""
    return volume[(slice(None),) * axis + (index,)]


def id_section_uri(superpixel_section: np.ndarray) -> str:
    """A slice of superpixel ids as an RGB PNG data URI (id = r + 256 g + 65536 b)."""
    ids = np.asarray(superpixel_section, dtype=np.uint32)
    if ids.max(initial=0) >= 1 << 24:
        raise ValueError("superpixel ids do not fit in 24 bits")
    rgb = np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


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
