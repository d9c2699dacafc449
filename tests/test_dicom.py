import shutil

import numpy as np
import pydicom
import pytest
from dicom_series import PATIENT_NAME, edit_file, phantom_image, write_series
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)

from superpixel_annotator.core import dicom, dicom_pixels
from superpixel_annotator.core.dicom import find_series, is_dicom_folder, load_dicom_series
from superpixel_annotator.core.image_files import Limits, VolumeError
from superpixel_annotator.core.volume import load_volume
from superpixel_annotator.web.app import sample_path

IDENTIFYING = ("Doe", "Jane", "JD-1234", "19700101")
SMALL_AFFINE = np.array(
    [[1.0, 0, 0, -3.0], [0, 0.8, 0, 5.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1.0]],
)


def rotation(degrees: float, axis) -> np.ndarray:
    """A 4x4 rotation by ``degrees`` about ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(degrees)
    matrix = np.eye(4)
    matrix[:3, :3] = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    return matrix


def small_array(shape=(6, 5, 7), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-200, 800, shape).astype(np.int16)


def assert_private(text: str) -> None:
    assert not any(field in text for field in IDENTIFYING), text


def refusal(folder, **options) -> str:
    """The one-line message of the VolumeError reading ``folder`` raises, free of patient data."""
    with pytest.raises(VolumeError) as caught:
        load_dicom_series(folder, **options)
    message = str(caught.value)
    assert "\n" not in message
    assert_private(message)
    return message


@pytest.fixture(scope="module")
def phantom():
    return phantom_image()


@pytest.fixture(scope="module")
def axial_folder(tmp_path_factory, phantom):
    folder = tmp_path_factory.mktemp("axial")
    write_series(folder, *phantom, description="T1 AX phantom")
    return folder


@pytest.fixture(scope="module")
def oblique_folder(tmp_path_factory, phantom):
    """The phantom's voxel grid turned 20 degrees about an oblique axis, stored as CT."""
    folder = tmp_path_factory.mktemp("oblique")
    array, affine = phantom
    write_series(
        folder,
        array,
        rotation(20, [1, 2, 0.5]) @ affine,
        description="oblique",
        modality="CT",
        slope=0.5,
        intercept=-20.0,
    )
    return folder


@pytest.fixture
def small_series(tmp_path):
    """A small MR series: its folder and its files in slice order."""
    paths = write_series(tmp_path / "series", small_array(), SMALL_AFFINE)
    return tmp_path / "series", paths


def test_the_phantom_read_from_dicom_equals_the_nifti_in_display_order(axial_folder, phantom):
    volume = load_dicom_series(axial_folder)
    reference = load_volume(sample_path())
    np.testing.assert_array_equal(volume.data, reference.data)
    np.testing.assert_allclose(volume.affine, phantom[1], atol=1e-6)
    assert volume.spacing == pytest.approx(reference.spacing)
    assert volume.name == "T1_AX_phantom"
    assert volume.notes == ()


def test_the_oblique_phantom_keeps_its_voxel_grid_and_rescaled_intensities(oblique_folder, phantom):
    array, affine = phantom
    volume = load_dicom_series(oblique_folder)
    np.testing.assert_allclose(volume.affine, rotation(20, [1, 2, 0.5]) @ affine, atol=1e-4)
    np.testing.assert_allclose(volume.to_source(volume.data), array, atol=0.25)
    assert len(volume.notes) == 1 and "HU" in volume.notes[0] and '"oblique"' in volume.notes[0]
    assert_private(volume.notes[0])


@pytest.mark.parametrize("folder_fixture", ["axial_folder", "oblique_folder"])
def test_geometry_and_intensities_equal_simpleitks(folder_fixture, request):
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is needed to compare readers")
    folder = request.getfixturevalue(folder_fixture)
    volume = load_dicom_series(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    # SimpleITK's array is (z, y, x); its index (x, y, z) is ours (column, row, slice).
    theirs = sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float32)
    ours = volume.to_source(volume.data)
    np.testing.assert_array_equal(ours, theirs)
    rng = np.random.default_rng(0)
    indices = rng.integers(0, ours.shape, size=(200, 3))
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in ours.shape])).reshape(3, -1).T
    for index in np.concatenate([indices, corners]):
        world = (volume.affine @ [*index, 1])[:3]
        x, y, z = image.TransformIndexToPhysicalPoint([int(i) for i in index])
        np.testing.assert_allclose(world, [-x, -y, z], atol=1e-4)
        assert ours[tuple(index)] == image.GetPixel(*[int(i) for i in index])


def test_slices_are_ordered_by_position_not_by_name_or_instance_number(tmp_path):
    array = small_array()
    paths = write_series(tmp_path, array, SMALL_AFFINE, shuffle_names=True)
    numbers = [pydicom.dcmread(path).InstanceNumber for path in paths]
    assert numbers != sorted(numbers) and [p.name for p in paths] != sorted(p.name for p in paths)
    volume = load_dicom_series(tmp_path)
    np.testing.assert_array_equal(volume.to_source(volume.data), array)


def test_slices_stacked_against_the_normal_are_reversed(tmp_path):
    array = small_array()
    flipped = SMALL_AFFINE @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 6], [0, 0, 0, 1]])
    write_series(tmp_path, array, flipped)
    volume = load_dicom_series(tmp_path)
    np.testing.assert_array_equal(volume.to_source(volume.data), array[:, :, ::-1])
    np.testing.assert_allclose(volume.affine, SMALL_AFFINE, atol=1e-6)


def test_ct_intensities_are_rescaled_and_noted_in_hu(tmp_path):
    array = small_array().astype(float) * 2 - 1024
    write_series(tmp_path, array, SMALL_AFFINE, modality="CT", slope=2.0, intercept=-1024.0)
    volume = load_dicom_series(tmp_path)
    np.testing.assert_array_equal(volume.to_source(volume.data), array)
    assert volume.data.dtype == np.float32
    assert volume.notes == ('DICOM series "T1 AX": CT intensities are in Hounsfield units (HU)',)


def test_several_series_are_listed_and_one_is_picked_by_uid(tmp_path):
    write_series(tmp_path, small_array(), SMALL_AFFINE, description="T1 AX", seed=1)
    write_series(
        tmp_path, small_array((4, 4, 3)), SMALL_AFFINE, description="CT head", modality="CT"
    )
    (tmp_path / "junk.dcm").write_bytes(np.random.default_rng(0).bytes(2000))
    found = find_series(tmp_path)
    assert [(s.description, s.modality, s.slices) for s in found] == [
        ("CT head", "CT", 3),
        ("T1 AX", "MR", 7),
    ]
    assert all(len(s.files) == s.slices for s in found)
    message = refusal(tmp_path)
    assert "2 DICOM series" in message
    for series in found:
        assert series.uid in message and series.description in message
    assert "CT, 3 slices" in message and "MR, 7 slices" in message
    assert load_dicom_series(tmp_path, series_uid=found[0].uid).data.shape == (3, 4, 4)
    assert "no DICOM series with UID 1.2.3" in refusal(tmp_path, series_uid="1.2.3")


def test_random_bytes_named_dcm_are_not_dicom(tmp_path):
    (tmp_path / "image.dcm").write_bytes(np.random.default_rng(0).bytes(5000))
    assert find_series(tmp_path) == []
    assert not is_dicom_folder(tmp_path)
    assert refusal(tmp_path) == f"no DICOM series in {tmp_path}"


def test_is_dicom_folder(small_series, tmp_path):
    folder, paths = small_series
    assert is_dicom_folder(folder)
    assert not is_dicom_folder(paths[0])
    assert not is_dicom_folder(tmp_path / "absent")


def test_a_series_without_description_is_named_by_uid(tmp_path):
    paths = write_series(tmp_path, small_array(), SMALL_AFFINE, description="")
    assert load_dicom_series(tmp_path).name == "dicom-series"
    paths[3].unlink()
    assert pydicom.dcmread(paths[0]).SeriesInstanceUID in refusal(tmp_path)


def test_the_name_is_the_description_made_safe_for_a_file_name(tmp_path):
    write_series(tmp_path, small_array(), SMALL_AFFINE, description="../T1 / AX+C (2)")
    assert load_dicom_series(tmp_path).name == "T1_AX_C_2"


def shift_along_normal(path, distance):
    position = pydicom.dcmread(path).ImagePositionPatient
    edit_file(path, ImagePositionPatient=[position[0], position[1], position[2] + distance])


def make_jpeg_ls(path):
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = JPEGLSLossless
    dataset.PixelData = encapsulate([b"\xff\xd8not JPEG-LS\xff\xd9"])
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    dataset.save_as(path, enforce_file_format=True)


BROKEN = {
    "mixed orientations": (
        lambda paths: edit_file(paths[2], ImageOrientationPatient=[0, 1, 0, 0, 0, -1]),
        "different orientations",
    ),
    "different pixel spacing": (
        lambda paths: edit_file(paths[1], PixelSpacing=[2, 2]),
        "different pixel spacings, 0.8x1 and 2x2 mm",
    ),
    "different sizes": (
        lambda paths: edit_file(paths[0], Rows=4, Columns=4, PixelData=bytes(32)),
        "slices of different sizes, 4x4 and 5x6 (rows x columns)",
    ),
    "a missing slice": (
        lambda paths: paths[3].unlink(),
        "slices missing or unevenly spaced: 5 mm between slices 2 and 3",
    ),
    "an uneven step": (
        lambda paths: shift_along_normal(paths[3], 0.5),
        "slices missing or unevenly spaced: 3 mm between slices 2 and 3",
    ),
    "a duplicate position": (
        lambda paths: shutil.copy(paths[2], paths[2].with_name("copy")),
        "slices 3 and 4 (in position order) are at the same position",
    ),
    "a multi-frame file": (
        lambda paths: edit_file(paths[0], NumberOfFrames=7),
        "1 file(s) hold several frames (one holds 7); enhanced multi-frame",
    ),
    "an undecodable transfer syntax": (
        lambda paths: make_jpeg_ls(paths[4]),
        "the pixel data of slice 5 of 7 cannot be decoded, transfer syntax JPEG-LS Lossless "
        "Image Compression (1.2.840.10008.1.2.4.80)",
    ),
    "a missing position": (
        lambda paths: edit_file(paths[5], ImagePositionPatient=None),
        "1 file(s) have no valid ImagePositionPatient",
    ),
    "a single slice": (
        lambda paths: [path.unlink() for path in paths[1:]],
        "an image of shape (6, 5, 1) is too thin to annotate",
    ),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_a_broken_series_is_refused_naming_it_and_the_problem(broken, small_series):
    folder, paths = small_series
    break_series, expected = BROKEN[broken]
    break_series(paths)
    message = refusal(folder)
    assert message.startswith('DICOM series "T1 AX": ')
    assert expected in message
    # File names are never in messages: exports may name files after the patient.
    assert not any(path.name in message for path in paths)


def test_gantry_tilt_is_refused(tmp_path):
    tilted = SMALL_AFFINE.copy()
    tilted[1, 2] = np.tan(np.radians(12)) * tilted[2, 2]
    write_series(tmp_path, small_array(), tilted)
    message = refusal(tmp_path)
    assert 'DICOM series "T1 AX": gantry tilt: the slices are stacked 12 degrees off' in message


def test_limits_are_checked_before_pixel_data_is_read(small_series, monkeypatch):
    folder, paths = small_series

    def read_no_pixels(header):
        raise AssertionError(f"pixel data of {header.path} read")

    # Every file's pixels, read directly or decoded by pydicom, are read by slice_pixels.
    monkeypatch.setattr(dicom_pixels, "slice_pixels", read_no_pixels)
    message = refusal(folder, limits=Limits(max_voxels=100))
    assert message == ('DICOM series "T1 AX": 6x5x7 = 210 voxels is over the limit of 100 voxels')
    series_bytes = sum(path.stat().st_size for path in paths)
    message = refusal(folder, limits=Limits(max_bytes=series_bytes - 1))
    assert message.startswith('DICOM series "T1 AX": ') and "is over the" in message


def test_a_folder_of_too_many_files_is_refused(small_series, monkeypatch):
    folder, _ = small_series
    monkeypatch.setattr(dicom, "MAX_DICOM_FILES", 5)
    with pytest.raises(VolumeError, match="more than 5 files"):
        find_series(folder)


def test_patient_fields_are_written_but_never_shown(small_series):
    folder, paths = small_series
    assert pydicom.dcmread(paths[0]).PatientName == PATIENT_NAME
    volume = load_dicom_series(folder)
    assert_private(" ".join([volume.name, *volume.notes]))
    assert_private(repr(find_series(folder)))


def test_a_uniform_series_is_refused(tmp_path):
    write_series(tmp_path, np.full((4, 4, 3), 7), SMALL_AFFINE)
    assert refusal(tmp_path) == 'DICOM series "T1 AX": every voxel is 7; nothing to annotate'


def test_files_over_the_byte_limit_are_not_listed(small_series):
    folder, _ = small_series
    assert find_series(folder, limits=Limits(max_bytes=100)) == []


def recode(path, *, signed, bits_stored, syntax):
    """Store a file's 16-bit pixels signed or not, in ``bits_stored`` bits with the bits
    above them set (pydicom's decoder clears or sign-extends them), in ``syntax``."""
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array.astype(np.int64) & (1 << bits_stored) - 1
    pixels |= 0xA5A5 & ~((1 << bits_stored) - 1) & 0xFFFF
    dataset.update({"BitsStored": bits_stored, "HighBit": bits_stored - 1})
    dataset.PixelRepresentation = int(signed)
    dataset.PixelData = pixels.astype("<u2").tobytes()
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize(
    ("signed", "bits_stored", "syntax"),
    [
        (True, 16, ExplicitVRLittleEndian),
        (False, 16, ExplicitVRLittleEndian),
        (True, 12, ExplicitVRLittleEndian),
        (False, 12, ExplicitVRLittleEndian),
        (True, 12, ImplicitVRLittleEndian),
    ],
)
def test_uncompressed_pixels_are_read_directly_as_pydicom_decodes_them(
    tmp_path, monkeypatch, signed, bits_stored, syntax
):
    array = small_array() + (0 if signed else 200)
    paths = write_series(tmp_path, array, SMALL_AFFINE)
    for path in paths:
        recode(path, signed=signed, bits_stored=bits_stored, syntax=syntax)
    decoded = np.stack([pixel_array(path).T for path in paths], axis=2)
    np.testing.assert_array_equal(decoded, array)

    def no_decoder(path):
        raise AssertionError(f"{path} decoded by pydicom")

    monkeypatch.setattr(dicom_pixels, "pixel_array", no_decoder)
    volume = load_dicom_series(tmp_path)
    np.testing.assert_array_equal(volume.to_source(volume.data), array)


def test_compressed_pixels_are_decoded_by_pydicom_next_to_uncompressed_ones(tmp_path):
    array = small_array()
    paths = write_series(tmp_path, array, SMALL_AFFINE)
    for path in paths[::2]:
        dataset = pydicom.dcmread(path)
        dataset.compress(RLELossless)
        dataset.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == RLELossless
    volume = load_dicom_series(tmp_path)
    np.testing.assert_array_equal(volume.to_source(volume.data), array)


def test_pixel_data_shorter_than_the_header_says_is_refused(small_series):
    folder, paths = small_series
    edit_file(paths[2], PixelData=bytes(20))
    message = refusal(folder)
    assert message.startswith(
        'DICOM series "T1 AX": the pixel data of slice 3 of 7 cannot be decoded, transfer '
        "syntax Explicit VR Little Endian (1.2.840.10008.1.2.1)"
    )


def test_kept_headers_lose_private_attributes_in_sequences_too(small_series):
    folder, paths = small_series
    dataset = pydicom.dcmread(paths[0])
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.private_block(0x0009, "ACME", create=True).add_new(0x01, "LO", "private")
    dataset.ReferencedImageSequence = [item]
    dataset.private_block(0x0029, "ACME", create=True).add_new(0x10, "OB", bytes(2000))
    dataset.ImageComments = "x" * 2000
    dataset.save_as(paths[0], enforce_file_format=True)
    kept = load_dicom_series(folder).dicom_headers[0]
    assert not any(tag.is_private for tag in kept.keys())
    (reference,) = kept.ReferencedImageSequence
    assert reference.ReferencedSOPInstanceUID == "1.2.3"
    assert not any(tag.is_private for tag in reference.keys())
    assert kept.ImageComments == dataset.ImageComments and "PixelData" not in kept
