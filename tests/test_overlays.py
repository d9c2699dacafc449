import base64
import io

import numpy as np
import pytest
from PIL import Image

from superpixel_annotator.core.overlays import (
    BOUNDARY_RGBA,
    boundary_section,
    boundary_section_uri,
    id_section_uri,
    indexed_png_uri,
    label_palette,
)
from superpixel_annotator.core.palette import DEFAULT_LABELS


def decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    return np.asarray(image.convert("RGBA"))


def test_label_png_has_label_colours_and_transparent_background():
    table = label_palette(DEFAULT_LABELS)
    indexed = np.zeros((6, 7), np.uint8)
    indexed[1, 2] = 1
    indexed[3, 4] = 3
    rgba = decode(indexed_png_uri(indexed, table))
    assert rgba.shape == (6, 7, 4)
    np.testing.assert_array_equal(rgba[1, 2], table[1])
    np.testing.assert_array_equal(rgba[3, 4], table[3])
    assert rgba[0, 0, 3] == 0
    assert indexed_png_uri(np.zeros((6, 7), np.uint8), table) is None


def test_boundaries_lie_between_superpixels_and_not_in_air():
    section = np.zeros((6, 6), np.int32)
    section[1:5, 1:3] = 1
    section[1:5, 3:5] = 2
    edges = boundary_section(section)
    assert edges[2, 3] and not edges[2, 2]  # the border between 1 and 2, on one side only
    assert not edges[0].any() and not edges[:, 0].any()
    rgba = decode(boundary_section_uri(section))
    np.testing.assert_array_equal(rgba[2, 3], BOUNDARY_RGBA)
    assert boundary_section_uri(np.ones((4, 4), np.int32)) is None


def test_id_section_uri_round_trips_24_bit_ids():
    ids = np.array([[0, 1, 255], [256, 65_535, (1 << 24) - 1]], dtype=np.int32)
    rgb = decode(id_section_uri(ids)).astype(int)
    np.testing.assert_array_equal(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2], ids)
    with pytest.raises(ValueError):
        id_section_uri(np.array([[1 << 24]]))
