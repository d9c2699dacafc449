import dataclasses
from pathlib import Path

import numpy as np
import pytest

from superpixel_annotator.core.superpixels import Superpixels
from superpixel_annotator.core.volume import Volume
from superpixel_blocks import block_superpixels

REPO = Path(__file__).resolve().parents[1]
BRATS_DIR = REPO.parent / "shared" / "data" / "brats2013"
BRATS_CASES = sorted(BRATS_DIR.glob("brats_2013_pat*")) if BRATS_DIR.is_dir() else []


@pytest.fixture
def brats_case() -> Path:
    """The first BraTS 2013 case from ../shared, or a clean skip where it is absent."""
    if not BRATS_CASES:
        pytest.skip(f"BraTS data not found at {BRATS_DIR}")
    return BRATS_CASES[0]


@pytest.fixture
def oblique_affine() -> np.ndarray:
    """A permuted, flipped, anisotropic affine with an origin offset (source order LIA-like)."""
    return np.array(
        [
            [0.0, 0.0, -2.0, 40.0],
            [1.5, 0.0, 0.0, -20.0],
            [0.0, -1.0, 0.0, 10.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


@pytest.fixture
def small_case(oblique_affine) -> tuple[Volume, Superpixels]:
    """A small anisotropic volume with block superpixels whose blocks have distinct depths."""
    superpixels = block_superpixels(shape=(6, 15, 18), block=3)
    # Superpixels of the first block row end at slice 3, so strokes touch a subset of slices.
    labels = superpixels.labels.copy()
    labels[3:][np.isin(labels[3:], np.unique(labels[:, 1:3, :]))] = 0
    superpixels = Superpixels.from_labels(labels, params={})
    # The oblique affine puts source axes (15, 6, 18) in display order (6, 15, 18).
    empty = Volume.from_source_array(np.zeros((15, 6, 18), np.float32), oblique_affine, "small")
    data = np.where(labels > 0, 100.0 + labels, 0.0).astype(np.float32)
    return dataclasses.replace(empty, data=data), superpixels


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the session (see ``postgres.py``), or a skip saying why not."""
    from postgres import PostgresUnavailable, start_server

    try:
        server = start_server()
    except PostgresUnavailable as reason:
        pytest.skip(str(reason))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc_server():
    """An Orthanc server with DICOMweb for the session (see ``orthanc.py``), or a skip saying
    why not: ``dicomweb_url`` is its DICOMweb root, ``upload(paths)`` stores DICOM files."""
    from orthanc import OrthancUnavailable, start_server

    try:
        server = start_server()
    except OrthancUnavailable as reason:
        pytest.skip(str(reason))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str | None:
    """Each label store test runs on both databases: ``None`` (the default, SQLite in the
    labels folder), then a new database of the session's PostgreSQL server."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_server").create_database()
