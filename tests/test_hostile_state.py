"""What a hostile client can send as annotation state, Fill preview and stroke: refused with
bounded work (memory measured with tracemalloc, never time), while the largest legitimate
state still restores."""

import base64
import io
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from numpy.lib import format as npy_format

from superpixel_annotator.core.annotation import MAX_HISTORY, Annotation, AnnotationStateError
from superpixel_annotator.core.cases import open_case
from superpixel_annotator.core.client_state import max_state_bytes, max_state_length
from superpixel_annotator.core.editing import (
    MAX_STROKE_LENGTH_VOXELS,
    MAX_STROKE_VERTICES,
    EditSession,
    proposal_arrays,
)
from superpixel_annotator.core.geometry import (
    SAMPLES_PER_VOXEL,
    polyline_length,
    polyline_voxels,
    view_geometry,
)
from superpixel_blocks import block_superpixels

PALETTE = frozenset({1, 2, 3, 4, 5})
MEMORY_BOUND = 50 << 20
BOMB_BYTES = 64 << 20


@pytest.fixture(scope="module")
def superpixels():
    """About 120 superpixels: states of up to a few hundred kB are legitimate."""
    return block_superpixels(shape=(2, 32, 32), block=3)


def peak_memory(function) -> int:
    """The peak of memory traced while ``function`` runs."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_refused_within_memory(superpixels, state, match: str) -> None:
    def restore():
        with pytest.raises(AnnotationStateError, match=match):
            Annotation.from_state(superpixels, state)

    assert peak_memory(restore) < MEMORY_BOUND


def encode(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def members_of(annotation: Annotation) -> dict[str, bytes]:
    """The archive members of a state: name to ``.npy`` bytes."""
    raw = zlib.decompress(base64.b64decode(annotation.to_state()))
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def archive_of(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, content in members.items():
                archive.writestr(name, content)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple, version=(1, 0)) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    writer = {(1, 0): npy_format.write_array_header_1_0, (2, 0): npy_format.write_array_header_2_0}
    writer[version](buffer, header)
    return buffer.getvalue()


def painted(superpixels) -> Annotation:
    annotation = Annotation(superpixels)
    annotation.paint(0, 0, [(4, 4), (4, 20)], 1)
    annotation.paint(0, 0, [(10, 4)], 0)
    return annotation


def test_a_zlib_bomb_is_refused_before_it_expands(superpixels):
    inflater = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    bomb = b"".join(inflater.compress(chunk) for _ in range(BOMB_BYTES >> 20)) + inflater.flush()
    state = base64.b64encode(bomb).decode("ascii")
    assert len(state) < max_state_length(superpixels.count)  # the text itself is allowed
    assert_refused_within_memory(superpixels, state, "expands beyond")


def test_a_state_longer_than_the_largest_is_refused_before_decoding(superpixels):
    state = "A" * (max_state_length(superpixels.count) + 1)
    assert_refused_within_memory(superpixels, state, "too long")


def test_a_deflate_bomb_member_is_refused_by_its_declared_size(superpixels):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("undo_ids.npy", "w") as member:
            member.write(npy_header("<i4", (BOMB_BYTES // 4,)))
            for _ in range(BOMB_BYTES >> 20):
                member.write(bytes(1 << 20))
    state = encode(buffer.getvalue())
    assert len(state) < max_state_length(superpixels.count)
    assert_refused_within_memory(superpixels, state, "undo_ids.npy is too large")


def test_a_deflate_bomb_member_lying_about_its_size_is_read_no_further(superpixels):
    members = members_of(painted(superpixels))
    del members["labels.npy"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        with archive.open("labels.npy", "w") as member:
            member.write(npy_header("|u1", (superpixels.count + 1,)))
            for _ in range(BOMB_BYTES >> 20):
                member.write(bytes(1 << 20))
    raw = bytearray(buffer.getvalue())
    entry = raw.rindex(b"PK\x01\x02")  # the central directory entry of labels.npy
    raw[entry + 24 : entry + 28] = (superpixels.count + 1 + 128).to_bytes(4, "little")
    state = encode(bytes(raw))

    def restore():
        # Its zeros are labels the palette allows, so it may restore: what matters is memory.
        try:
            Annotation.from_state(superpixels, state, labels=PALETTE)
        except AnnotationStateError:
            pass

    assert peak_memory(restore) < MEMORY_BOUND


def test_a_header_claiming_10_to_the_15_elements_is_refused(superpixels):
    members = members_of(Annotation(superpixels))
    members["labels.npy"] = npy_header("|u1", (10**15,)) + bytes(64)
    assert_refused_within_memory(superpixels, encode(archive_of(members)), "too large")


def test_an_archive_listing_many_members_is_refused_before_they_are_read(superpixels):
    members = {f"{index}.npy": b"" for index in range(1000)}
    state = encode(archive_of(members))
    assert len(state) < max_state_length(superpixels.count)
    assert_refused_within_memory(superpixels, state, "too many members")


def replaced(superpixels, name: str, content: bytes) -> dict[str, bytes]:
    members = members_of(painted(superpixels))
    members[name] = content
    return members


def comment_archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO(archive_of(members))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.comment = b"hello"
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda sp, m: {**m, "extra.npy": m["labels.npy"]}, "unknown members"),
        (lambda sp, m: {k: v for k, v in m.items() if k != "undo_ids.npy"}, "lacks undo_ids"),
        (lambda sp, m: {**m, "labels.npy": npy_header("<i8", (sp.count + 1,))}, "wrong type"),
        (lambda sp, m: {**m, "labels.npy": npy_header("|O", (sp.count + 1,))}, "wrong type"),
        (lambda sp, m: {**m, "labels.npy": npy_header(">i4", (3,))}, "wrong type"),
        (lambda sp, m: {**m, "labels.npy": npy_header("|u1", (2, 3))}, "wrong type"),
        (
            lambda sp, m: {**m, "labels.npy": npy_header("|u1", (sp.count,)) + bytes(sp.count)},
            "does not fit",
        ),
        (lambda sp, m: {**m, "labels.npy": m["labels.npy"][:-1]}, "truncated"),
        (lambda sp, m: {**m, "labels.npy": b"\x93NUMPY\x03\x00" + bytes(100)}, "plain array"),
        (lambda sp, m: {**m, "labels.npy": b"not numpy at all"}, "not an annotation state"),
        (lambda sp, m: {**m, "undo_sizes.npy": npy_header("<i8", (1,)) + bytes(8)}, "disagree"),
    ],
    ids=[
        "unknown",
        "missing",
        "dtype",
        "object",
        "big-endian",
        "2d",
        "length",
        "truncated",
        "npy-v3",
        "not-npy",
        "history",
    ],
)
def test_malformed_members_are_refused(superpixels, change, match):
    members = change(superpixels, members_of(painted(superpixels)))
    with pytest.raises(AnnotationStateError, match=match):
        Annotation.from_state(superpixels, encode(archive_of(members)))


@pytest.mark.parametrize(
    "raw",
    [
        lambda m: archive_of(m, zipfile.ZIP_BZIP2),
        comment_archive,
        lambda m: archive_of(m)[:-30],
        lambda m: b"",
        lambda m: b"PK\x05\x06" + bytes(18),
    ],
    ids=["bzip2", "comment", "cut", "empty", "empty-archive"],
)
def test_unusual_archives_are_refused(superpixels, raw):
    with pytest.raises(AnnotationStateError):
        Annotation.from_state(superpixels, encode(raw(members_of(painted(superpixels)))))


def test_compressed_members_within_bounds_are_read(superpixels):
    annotation = painted(superpixels)
    members = members_of(annotation)
    restored = Annotation.from_state(superpixels, encode(archive_of(members, zipfile.ZIP_DEFLATED)))
    np.testing.assert_array_equal(restored.marked_labels(), annotation.marked_labels())


def mangled(data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` with one to three bytes set at random."""
    data = bytearray(data)
    for position in rng.integers(0, len(data), size=rng.integers(1, 4)):
        data[position] = rng.integers(0, 256)
    return bytes(data)


def test_mangled_states_are_refused_or_restored_never_crash(superpixels):
    annotation = painted(superpixels)
    raw = zlib.decompress(base64.b64decode(annotation.to_state()))
    members = members_of(annotation)
    rng = np.random.default_rng(0)
    for trial in range(400):
        if trial % 2:
            name = sorted(members)[trial // 2 % len(members)]
            state = encode(archive_of({**members, name: mangled(members[name], rng)}))
        else:
            state = encode(mangled(raw, rng))
        try:
            Annotation.from_state(superpixels, state, labels=PALETTE)
        except AnnotationStateError:
            pass


def test_the_largest_legitimate_state_restores(superpixels):
    annotation = Annotation(superpixels)
    ones = np.ones(superpixels.count + 1, np.uint8)
    ones[0] = 0
    for step in range(MAX_HISTORY + 5):
        annotation.set_superpixel_labels(ones * (1 + step % 2), filled=bool(step % 3))
    for _ in range(MAX_HISTORY // 3):
        annotation.undo()
    state = annotation.to_state()
    assert len(state) <= max_state_length(superpixels.count)
    assert len(zlib.decompress(base64.b64decode(state))) <= max_state_bytes(superpixels.count)
    restored = Annotation.from_state(superpixels, state, labels={1, 2})
    np.testing.assert_array_equal(restored.marked_labels(), annotation.marked_labels())
    for _ in range(MAX_HISTORY // 3):
        np.testing.assert_array_equal(restored.redo(), annotation.redo())
    for _ in range(MAX_HISTORY):
        np.testing.assert_array_equal(restored.undo(), annotation.undo())
    assert restored.to_state() == annotation.to_state()


def state_with_labels(superpixels, *labels: int) -> str:
    annotation = Annotation(superpixels)
    for index, label in enumerate(labels):
        annotation.paint(0, 0, [(4, 4 + 3 * index)], label, level="fine")
    return annotation.to_state()


@pytest.mark.parametrize("labels", [(200,), (1, 255), (200, 1)], ids=["200", "255", "history"])
def test_labels_outside_the_palette_are_refused(superpixels, labels):
    state = state_with_labels(superpixels, *labels)
    if labels == (200, 1):  # 200 only in the history: the superpixel was painted over
        annotation = Annotation.from_state(superpixels, state)
        annotation.paint(0, 0, [(4, 4)], 1, level="fine")
        state = annotation.to_state()
    assert Annotation.from_state(superpixels, state).superpixel_labels.any()  # library default
    with pytest.raises(AnnotationStateError, match="not allowed"):
        Annotation.from_state(superpixels, state, labels=PALETTE)


def test_erased_marks_are_always_allowed(superpixels):
    state = state_with_labels(superpixels, 1, 0)
    restored = Annotation.from_state(superpixels, state, labels={1})
    assert restored.erased.sum() == 1 and (restored.marked_labels() == 1).sum() == 1


@pytest.fixture
def case(small_case, tmp_path):
    volume, superpixels = small_case
    return open_case([volume], tmp_path, superpixels)


def test_an_edit_session_refuses_a_state_outside_its_palette(case):
    state = state_with_labels(case.superpixels, 200)
    with pytest.raises(AnnotationStateError, match="not allowed"):
        EditSession(case, state, PALETTE)


def test_a_fill_preview_outside_the_palette_is_dropped(case):
    preview = {"ids": [1, 2], "labels": [1, 255]}
    count = case.superpixels.count
    assert proposal_arrays(preview, count)[0].size == 2  # library default: any label
    assert proposal_arrays(preview, count, labels=PALETTE)[0].size == 0
    session = EditSession(case, None, PALETTE, preview)
    assert session.accept_fill().size == 0
    assert session.annotation.to_state() == Annotation(case.superpixels).to_state()
    assert proposal_arrays({"ids": [1, 2], "labels": [0, 5]}, count, labels=PALETTE)[0].size == 2


def zigzag_path(case, vertices: int) -> str:
    """A stroke on slice 3 of the axial view going from the top row to the bottom and back,
    one column further each time, in the view's mm."""
    geometry = view_geometry(case.volume.spacing, 0)
    height, width = case.superpixels.labels.shape[1:]
    rows = np.where(np.arange(vertices) % 2, height - 1, 0)
    cols = np.arange(vertices) % width
    return "M" + "L".join(
        f"{col * geometry['dx']},{row * geometry['dy']}"
        for row, col in zip(rows, cols, strict=True)
    )


def test_a_zigzag_stroke_of_many_vertices_is_refused_as_too_long(case):
    session = EditSession(case, None, PALETTE)

    def stroke():
        with pytest.raises(ValueError, match="stroke is too long"):
            session.stroke(0, 3, zigzag_path(case, MAX_STROKE_VERTICES), 1)

    assert peak_memory(stroke) < MEMORY_BOUND
    assert not session.annotation.superpixel_labels.any()


def test_a_long_stroke_within_the_limit_is_painted(case):
    height = case.superpixels.labels.shape[1]
    vertices = MAX_STROKE_LENGTH_VOXELS * 9 // (10 * height)
    session = EditSession(case, None, PALETTE)
    assert session.stroke(0, 3, zigzag_path(case, vertices), 1).size


def test_stroke_length_is_measured_after_clipping():
    assert polyline_length([(-1e300, 3), (1e300, 3)], (10, 20)) == 9
    assert polyline_length([(0, 0), (3, 4), (3, 4)], (10, 20)) == 5
    assert polyline_length([(2, 2)], (10, 20)) == 0


def reference_polyline_voxels(points, shape):
    """The rasterisation before it was made linear: every sample, then unique rows."""
    upper = np.asarray(shape) - 1
    points = np.clip(np.asarray(points, dtype=np.float64).reshape(-1, 2), 0, upper)
    samples = [points[:1]]
    for start, stop in zip(points[:-1], points[1:], strict=True):
        steps = max(1, int(np.ceil(np.abs(stop - start).max() * SAMPLES_PER_VOXEL)))
        fractions = np.arange(1, steps + 1)[:, None] / steps
        samples.append(start + fractions * (stop - start))
    return np.unique(np.rint(np.concatenate(samples)).astype(np.int64), axis=0)


def test_rasterisation_matches_the_reference_on_random_polylines():
    rng = np.random.default_rng(1)
    for trial in range(300):
        shape = tuple(int(side) for side in rng.integers(1, 40, size=2))
        vertices = int(rng.integers(1, 30))
        points = rng.uniform(-5, max(shape) + 5, size=(vertices, 2))
        if trial % 3 == 0:
            points = np.round(points * 2) / 2  # half voxels: ties of the rounding
        expected = reference_polyline_voxels(points, shape)
        voxels = polyline_voxels(points, shape)
        assert voxels.dtype == expected.dtype
        np.testing.assert_array_equal(voxels, expected)
