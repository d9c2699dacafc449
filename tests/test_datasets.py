import builtins
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_series import write_series

from superpixel_annotator.core import datasets
from superpixel_annotator.core.datasets import (
    Dataset,
    DatasetCase,
    DatasetError,
    find_dataset,
    is_dataset_folder,
    is_label_name,
    is_mask_name,
    modality_of,
    name_tokens,
)


def touch(folder: Path, *names: str) -> Path:
    """Empty files ``names`` in ``folder`` (discovery never opens them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).touch()
    return folder


def summary(dataset: Dataset) -> dict[str, tuple]:
    """Each case as (modality file names, modality names, label file name or None)."""
    return {
        case.name: (
            tuple(path.name for path in case.modalities),
            case.modality_names,
            case.label.name if case.label else None,
        )
        for case in dataset.cases
    }


def refusal(root, **options) -> str:
    """The message of the DatasetError finding ``root`` raises; checked to be one line."""
    with pytest.raises(DatasetError) as caught:
        find_dataset(root, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def one_problem(dataset: Dataset) -> str:
    assert len(dataset.problems) == 1, dataset.problems
    assert "\n" not in dataset.problems[0]
    return dataset.problems[0]


# Names


@pytest.mark.parametrize(
    "stem, tokens",
    [
        ("BraTS2021_00000_t1ce", ["brats2021", "00000", "t1ce"]),
        ("BraTS-GLI-00000-000-t2f", ["brats", "gli", "00000", "000", "t2f"]),
        ("Flair_subtrMeanDivStd", ["flair", "subtrmeandivstd"]),
        ("café.T1", ["café", "t1"]),
    ],
)
def test_names_split_into_lower_case_tokens(stem, tokens):
    assert name_tokens(stem) == tokens


@pytest.mark.parametrize(
    "stem, modality",
    [
        ("Flair_subtrMeanDivStd", "FLAIR"),
        ("T1c_subtrMeanDivStd", "T1c"),
        ("BraTS2021_00000_flair", "FLAIR"),
        ("BraTS2021_00000_t1ce", "T1c"),
        ("BraTS2021_00000_t1", "T1"),
        ("BraTS2021_00000_t2", "T2"),
        ("BraTS-GLI-00000-000-t2f", "FLAIR"),
        ("BraTS-GLI-00000-000-t1c", "T1c"),
        ("BraTS-GLI-00000-000-t1n", "T1"),
        ("BraTS-GLI-00000-000-t2w", "T2"),
        ("case_FLA", "FLAIR"),
        ("case.T1GD", "T1c"),
        ("case_t1km", "T1c"),
        ("case_t1post", "T1c"),
        ("sub-01_T1w", "T1"),
        ("sub-01_ses-t1_T2w", "T2"),  # the last modality token decides
        ("t1_then_flair", "FLAIR"),
        ("ct_0001", None),
        ("t1weighted", None),  # tokens, not substrings
        ("flairish", None),
    ],
)
def test_the_modality_of_a_name(stem, modality):
    assert modality_of(stem) == modality


@pytest.mark.parametrize(
    "stem",
    [
        "BraTS2021_00000_seg",
        "BraTS-GLI-00000-000-seg",
        "OTMultiClass",
        "OTBinary",
        "case_OT",
        "case1_label",
        "case1-labels-v2",
        "Segmentation",
        "case_GT",
        "GroundTruth",
        "ground_truth",
        "case.annotation",
    ],
)
def test_label_names(stem):
    assert is_label_name(stem)
    assert not is_mask_name(stem)
    assert modality_of(stem) is None


@pytest.mark.parametrize("stem", ["brainmask", "brain_mask", "case1-MASK", "t1_mask", "seg_mask"])
def test_mask_names_are_neither_labels_nor_modalities(stem):
    assert is_mask_name(stem)
    assert not is_label_name(stem)


@pytest.mark.parametrize("stem", ["other", "otsu_t1", "segment", "labelled", "t1c", "gtx"])
def test_words_that_only_look_like_labels(stem):
    assert not is_label_name(stem)
    assert not is_mask_name(stem)


# Flat folders: one case per image file


def test_each_image_file_in_a_flat_folder_is_a_case(tmp_path):
    touch(tmp_path, "b.nii", "a.nii.gz", "c.mgz", "d.mgh", "E.NII.GZ", "readme.txt", "f.img")
    dataset = find_dataset(tmp_path)
    assert [case.name for case in dataset.cases] == ["E", "a", "b", "c", "d"]
    assert dataset.case("a") == DatasetCase("a", (tmp_path / "a.nii.gz",), ("a",), None)
    assert dataset.case("E").modalities == (tmp_path / "E.NII.GZ",)
    assert dataset.root == tmp_path
    assert dataset.problems == ()


def test_a_flat_case_named_by_modality_shows_that_modality(tmp_path):
    touch(tmp_path, "patient1_flair.nii.gz", "patient1_ct.nii.gz")
    assert summary(find_dataset(tmp_path)) == {
        "patient1_ct": (("patient1_ct.nii.gz",), ("patient1_ct",), None),
        "patient1_flair": (("patient1_flair.nii.gz",), ("FLAIR",), None),
    }


def test_labels_next_to_flat_cases_attach_to_them(tmp_path):
    touch(
        tmp_path,
        "BraTS-GLI-00001-000.nii.gz",
        "BraTS-GLI-00001-000-seg.nii.gz",
        "case_02.nii",
        "case_02_label_v2.nii",
        "case_03.mgz",
        "case_03.labels.nii.gz",
        "case_04.nii.gz",
        "case_04_brainmask.nii.gz",
    )
    dataset = find_dataset(tmp_path)
    assert summary(dataset) == {
        "BraTS-GLI-00001-000": (
            ("BraTS-GLI-00001-000.nii.gz",),
            ("BraTS-GLI-00001-000",),
            "BraTS-GLI-00001-000-seg.nii.gz",
        ),
        "case_02": (("case_02.nii",), ("case_02",), "case_02_label_v2.nii"),
        "case_03": (("case_03.mgz",), ("case_03",), "case_03.labels.nii.gz"),
        "case_04": (("case_04.nii.gz",), ("case_04",), None),
    }
    assert dataset.problems == ()


def test_two_files_giving_the_same_name_are_neither_used(tmp_path):
    touch(tmp_path, "a.nii", "a.nii.gz", "a_seg.nii.gz", "b.nii.gz")
    dataset = find_dataset(tmp_path)
    assert summary(dataset) == {"b": (("b.nii.gz",), ("b",), None)}
    problem = one_problem(dataset)
    assert "a.nii and a.nii.gz" in problem and "same case name" in problem


def test_case_names_are_unique_ignoring_case(tmp_path):
    touch(tmp_path, "Case1.nii.gz", "b.nii.gz")
    touch(tmp_path / "case1", "t1.nii.gz")
    dataset = find_dataset(tmp_path)
    assert [case.name for case in dataset.cases] == ["b"]
    assert "Case1.nii.gz and case1/" in one_problem(dataset)


def test_labels_without_their_case_are_problems(tmp_path):
    touch(tmp_path, "a.nii.gz", "b_seg.nii.gz", "seg.nii.gz")
    dataset = find_dataset(tmp_path)
    assert summary(dataset) == {"a": (("a.nii.gz",), ("a",), None)}
    assert dataset.problems == (
        "b_seg.nii.gz: a label file for 'b', no such case",
        "seg.nii.gz: a label file that names no case",
    )


def test_a_case_with_several_labels_uses_the_shortest_name(tmp_path):
    touch(tmp_path, "a.nii.gz", "a_seg.nii.gz", "a_label.nii", "a_gt.nii")
    dataset = find_dataset(tmp_path)
    assert dataset.case("a").label == tmp_path / "a_gt.nii"
    problem = one_problem(dataset)
    assert problem.startswith("a.nii.gz: several label files")
    assert "a_gt.nii, a_label.nii, a_seg.nii.gz" in problem and "a_gt.nii is used" in problem


def test_names_with_unprintable_characters_are_problems(tmp_path):
    touch(tmp_path, "a\nb.nii.gz", "c.nii.gz")
    dataset = find_dataset(tmp_path)
    assert [case.name for case in dataset.cases] == ["c"]
    assert one_problem(dataset).startswith("a?b.nii.gz: ")


# Case folders: one case per subfolder


def test_brats_2018_to_2021_case_folders(tmp_path):
    for case in ("BraTS2021_00002", "BraTS2021_00000"):
        names = [f"{case}_{suffix}.nii.gz" for suffix in ("t2", "seg", "t1", "flair", "t1ce")]
        touch(tmp_path / case, *names)
    dataset = find_dataset(tmp_path)
    assert [case.name for case in dataset.cases] == ["BraTS2021_00000", "BraTS2021_00002"]
    case = dataset.case("BraTS2021_00000")
    assert [path.name for path in case.modalities] == [
        "BraTS2021_00000_flair.nii.gz",
        "BraTS2021_00000_t1ce.nii.gz",
        "BraTS2021_00000_t1.nii.gz",
        "BraTS2021_00000_t2.nii.gz",
    ]
    assert case.modality_names == ("FLAIR", "T1c", "T1", "T2")
    assert case.label == tmp_path / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz"
    assert all(path.parent == tmp_path / case.name for path in case.modalities)
    assert dataset.problems == ()


def test_brats_2023_case_folders(tmp_path):
    case = "BraTS-GLI-00000-000"
    touch(tmp_path / case, *(f"{case}-{s}.nii.gz" for s in ("t1c", "t1n", "t2w", "t2f", "seg")))
    assert summary(find_dataset(tmp_path))[case] == (
        tuple(f"{case}-{s}.nii.gz" for s in ("t2f", "t1c", "t1n", "t2w")),
        ("FLAIR", "T1c", "T1", "T2"),
        f"{case}-seg.nii.gz",
    )


def test_brats_2013_case_folders_with_real_images(tmp_path):
    """Tiny real NIfTI files named as in BraTS 2013; the brain mask is ignored."""
    image = nib.Nifti1Image(np.zeros((2, 3, 4), np.float32), np.eye(4))
    folder = tmp_path / "brats_2013_pat0001_1"
    folder.mkdir()
    names = ["Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd", "OTMultiClass", "brainmask"]
    for name in names:
        nib.save(image, folder / f"{name}.nii.gz")
    assert summary(find_dataset(tmp_path)) == {
        "brats_2013_pat0001_1": (
            ("Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz"),
            ("FLAIR", "T1c"),
            "OTMultiClass.nii.gz",
        )
    }


def test_the_real_brats_2013_folder(brats_case):
    brats_dir = brats_case.parent
    dataset = find_dataset(brats_dir)
    assert [case.name for case in dataset.cases] == [
        "brats_2013_pat0005_1",
        "brats_2013_pat0006_1",
    ]
    for case in dataset.cases:
        assert case.modality_names == ("FLAIR", "T1c")
        assert [path.name for path in case.modalities] == [
            "Flair_subtrMeanDivStd.nii.gz",
            "T1c_subtrMeanDivStd.nii.gz",
        ]
        assert case.label == brats_dir / case.name / "OTMultiClass.nii.gz"
        assert all(path.is_file() for path in case.modalities)
    assert dataset.problems == ()


def test_unknown_modalities_follow_the_known_ones_by_file_name(tmp_path):
    touch(tmp_path / "case", "zeta.nii.gz", "t2.nii.gz", "DWI.mgz", "adc.nii", "flair.nii")
    touch(tmp_path / "ct_only", "scan_0001.nii.gz", "notes.txt")
    assert summary(find_dataset(tmp_path)) == {
        "case": (
            ("flair.nii", "t2.nii.gz", "DWI.mgz", "adc.nii", "zeta.nii.gz"),
            ("FLAIR", "T2", "DWI", "adc", "zeta"),
            None,
        ),
        "ct_only": (("scan_0001.nii.gz",), ("scan_0001",), None),
    }


def test_a_second_file_of_a_known_modality_follows_as_an_unknown_one(tmp_path):
    touch(tmp_path / "case", "T1c_subtrMeanDivStd.nii.gz", "t1c.nii.gz", "flair.nii.gz")
    case = find_dataset(tmp_path).case("case")
    assert case.modality_names == ("FLAIR", "T1c", "T1c_subtrMeanDivStd")
    assert case.modalities[1].name == "t1c.nii.gz"


def test_several_labels_in_a_case_folder(tmp_path):
    touch(tmp_path / "case", "flair.nii.gz", "OTMultiClass.nii.gz", "seg.nii.gz")
    dataset = find_dataset(tmp_path)
    assert dataset.case("case").label.name == "seg.nii.gz"
    problem = one_problem(dataset)
    assert problem.startswith("case/: several label files (OTMultiClass.nii.gz, seg.nii.gz)")


def test_a_label_next_to_a_case_folder_attaches_to_it(tmp_path):
    touch(tmp_path / "case", "flair.nii.gz")
    touch(tmp_path, "case_seg.nii.gz")
    assert find_dataset(tmp_path).case("case").label == tmp_path / "case_seg.nii.gz"


def test_flat_and_folder_cases_together(tmp_path):
    touch(tmp_path, "single.nii.gz")
    touch(tmp_path / "multi", "a_t1.nii", "a_t2.nii")
    assert summary(find_dataset(tmp_path)) == {
        "multi": (("a_t1.nii", "a_t2.nii"), ("T1", "T2"), None),
        "single": (("single.nii.gz",), ("single",), None),
    }


def test_case_folders_that_cannot_be_cases_are_problems(tmp_path):
    touch(tmp_path / "good", "flair.nii.gz")
    touch(tmp_path / "empty")
    touch(tmp_path / "documents", "notes.txt")
    touch(tmp_path / "only_labels", "seg.nii.gz", "brainmask.nii.gz")
    touch(tmp_path / "clash", "t1.nii", "T1.nii.gz")
    dataset = find_dataset(tmp_path)
    assert list(summary(dataset)) == ["good"]
    assert dataset.problems == (
        "clash/: T1.nii.gz and t1.nii have the same name; rename one",
        "documents/: holds no image file (.nii, .nii.gz, .mgz, .mgh) and no DICOM series",
        "empty/: holds no image file (.nii, .nii.gz, .mgz, .mgh) and no DICOM series",
        "only_labels/: holds only label and mask files, no image to annotate",
    )


def test_folders_are_not_looked_into_deeper_than_one_level(tmp_path):
    touch(tmp_path / "group" / "case", "flair.nii.gz")
    touch(tmp_path / "case2", "t1.nii.gz")
    touch(tmp_path / "case2" / "deeper", "t2.nii.gz")
    dataset = find_dataset(tmp_path)
    assert summary(dataset) == {"case2": (("t1.nii.gz",), ("T1",), None)}
    assert one_problem(dataset).startswith("group/: holds no image file")


def test_hidden_entries_are_ignored(tmp_path):
    touch(tmp_path, ".hidden.nii.gz", "a.nii.gz")
    touch(tmp_path / ".cache", "flair.nii.gz")
    touch(tmp_path / "case", "flair.nii.gz", "._flair.nii.gz", ".t1.nii.gz")
    dataset = find_dataset(tmp_path)
    assert summary(dataset) == {
        "a": (("a.nii.gz",), ("a",), None),
        "case": (("flair.nii.gz",), ("FLAIR",), None),
    }
    assert dataset.problems == ()


def test_the_labels_folder_and_excluded_folders_are_skipped(tmp_path):
    touch(tmp_path / "case", "flair.nii.gz")
    touch(tmp_path / "labels", "case.nii.gz")
    touch(tmp_path / "saved", "case.nii.gz")
    dataset = find_dataset(tmp_path, exclude=[tmp_path / "saved"])
    assert list(summary(dataset)) == ["case"]
    assert dataset.problems == ()
    assert "saved" in summary(find_dataset(tmp_path))


def test_an_excluded_folder_is_recognised_through_another_path(tmp_path, monkeypatch):
    touch(tmp_path / "case", "flair.nii.gz")
    touch(tmp_path / "saved", "case.nii.gz")
    monkeypatch.chdir(tmp_path / "case")
    dataset = find_dataset(tmp_path, exclude=[Path("..") / "saved"])
    assert list(summary(dataset)) == ["case"]


# Modality patterns


def test_modality_patterns_replace_matching_by_name(tmp_path):
    touch(tmp_path / "p1", "p1_PET.nii.gz", "p1_ct.nii.gz", "p1_seg.nii.gz", "p1_other.nii")
    touch(tmp_path / "p2", "p2_pet.nii.gz", "p2_CT.NII.GZ")
    dataset = find_dataset(tmp_path, modalities=" *_ct.nii.gz , *_pet.nii.gz")
    assert summary(dataset) == {
        "p1": (("p1_ct.nii.gz", "p1_PET.nii.gz"), ("ct", "pet"), "p1_seg.nii.gz"),
        "p2": (("p2_CT.NII.GZ", "p2_pet.nii.gz"), ("ct", "pet"), None),
    }
    assert dataset.problems == ()


def test_patterns_may_name_files_matching_by_name_would_skip(tmp_path):
    touch(tmp_path / "case", "t1.nii.gz", "brainmask.nii.gz")
    case = find_dataset(tmp_path, modalities="brainmask*,t1*").case("case")
    assert case.modality_names == ("brainmask", "t1")


def test_a_pattern_that_leaves_no_name_names_itself(tmp_path):
    touch(tmp_path / "case", "scan.nii.gz")
    assert find_dataset(tmp_path, modalities="*.nii.gz").case("case").modality_names == (
        "*.nii.gz",
    )


def test_a_case_folder_where_a_pattern_does_not_match_once_is_a_problem(tmp_path):
    touch(tmp_path / "good", "a_ct.nii.gz", "a_pet.nii.gz")
    touch(tmp_path / "missing", "a_ct.nii.gz")
    touch(tmp_path / "twice", "a_ct.nii.gz", "b_ct.nii.gz", "a_pet.nii.gz")
    dataset = find_dataset(tmp_path, modalities="*_ct.nii.gz,*_PET.nii.gz")
    assert list(summary(dataset)) == ["good"]
    assert dataset.problems == (
        "missing/: the modality pattern '*_PET.nii.gz' matches no file",
        "twice/: the modality pattern '*_ct.nii.gz' matches a_ct.nii.gz, b_ct.nii.gz",
    )


def test_two_patterns_matching_one_file_is_a_problem(tmp_path):
    touch(tmp_path / "good", "a_ct.nii.gz", "a_pet.nii.gz")
    touch(tmp_path / "bad", "ct_pet.nii.gz", "other.nii.gz")
    dataset = find_dataset(tmp_path, modalities="*ct*,*pet*")
    assert list(summary(dataset)) == ["good"]
    assert one_problem(dataset) == "bad/: two modality patterns match the same file"


def test_patterns_leave_flat_cases_alone(tmp_path):
    touch(tmp_path, "scan.nii.gz")
    assert summary(find_dataset(tmp_path, modalities="*_ct*")) == {
        "scan": (("scan.nii.gz",), ("scan",), None)
    }


@pytest.mark.parametrize("patterns", ["", "*_ct.nii.gz,", ",*_ct.nii.gz", "a*, ,b*"])
def test_malformed_pattern_lists(tmp_path, patterns):
    touch(tmp_path / "case", "a_ct.nii.gz")
    message = refusal(tmp_path, modalities=patterns)
    assert message.startswith(f"{tmp_path}: the modality patterns")
    assert "empty item" in message


def test_patterns_giving_one_name_twice(tmp_path):
    touch(tmp_path / "case", "a_ct.nii.gz")
    message = refusal(tmp_path, modalities="*_ct.nii.gz,*_CT.mgz")
    assert message.startswith(f"{tmp_path}: ") and "same modality name twice" in message


# DICOM series


def dicom_folder(folder: Path, seed: int = 0, **options) -> Path:
    """A small MR series of 4 slices, one file per slice, in ``folder``."""
    array = np.random.default_rng(seed).integers(0, 500, (5, 6, 4)).astype(np.int16)
    write_series(folder, array, np.eye(4), seed=seed, **options)
    return folder


def test_a_folder_holding_a_dicom_series_is_a_case_named_after_it(tmp_path):
    touch(tmp_path, "flat.nii.gz")
    dicom_folder(tmp_path / "patient7_flair")
    touch(dicom_folder(tmp_path / "ct_case"), "ct_case_seg.nii.gz", "brainmask.nii.gz")
    dataset = find_dataset(tmp_path)
    assert summary(dataset) == {
        "ct_case": (("ct_case",), ("ct_case",), "ct_case_seg.nii.gz"),
        "flat": (("flat.nii.gz",), ("flat",), None),
        "patient7_flair": (("patient7_flair",), ("FLAIR",), None),
    }
    assert dataset.case("ct_case").modalities == (tmp_path / "ct_case",)
    assert dataset.problems == ()


def test_a_folder_of_several_series_is_one_case_refused_when_opened(tmp_path):
    dicom_folder(tmp_path / "two", description="T1")
    dicom_folder(tmp_path / "two", seed=1, description="T2")
    assert summary(find_dataset(tmp_path)) == {"two": (("two",), ("two",), None)}


def test_dicom_subfolders_are_the_modalities_of_a_case(tmp_path):
    case = tmp_path / "case1"
    for name in ("t1c", "flair", "seg", "brain_mask"):
        dicom_folder(case / name)
    touch(case / "notes", "read me.txt")
    touch(case, "case1_seg.nii.gz")
    dicom_folder(case / "flair" / "deeper")
    dataset = find_dataset(tmp_path)
    assert summary(dataset) == {
        "case1": (("flair", "t1c"), ("FLAIR", "T1c"), "case1_seg.nii.gz"),
    }
    assert dataset.problems == ()


def test_modality_patterns_match_dicom_subfolders_by_name(tmp_path):
    dicom_folder(tmp_path / "case" / "CT_1")
    dicom_folder(tmp_path / "case" / "PET_1")
    dicom_folder(tmp_path / "series")
    dataset = find_dataset(tmp_path, modalities="pet*,ct*")
    assert summary(dataset) == {
        "case": (("PET_1", "CT_1"), ("pet", "ct"), None),
        "series": (("series",), ("series",), None),
    }


def test_dicom_and_image_subfolders_of_the_same_name_clash(tmp_path):
    touch(dicom_folder(tmp_path / "case" / "t1"), "x")
    touch(tmp_path / "case", "t1.nii.gz")
    touch(tmp_path, "other.nii")
    assert one_problem(find_dataset(tmp_path)).startswith("case/: t1 and t1.nii.gz have the same")


def test_finding_dicom_cases_peeks_at_one_file_per_series_folder(tmp_path, monkeypatch):
    dicom_folder(tmp_path / "series")
    dicom_folder(tmp_path / "case" / "flair")
    dicom_folder(tmp_path / "case" / "t1")
    real_open, opened = builtins.open, []

    def counting_open(path, *args, **kwargs):
        opened.append(Path(path).parent.name)
        return real_open(path, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError(f"read {args[0]}")

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(pydicom, "dcmread", refuse)
    assert set(summary(find_dataset(tmp_path))) == {"case", "series"}
    assert sorted(opened) == ["flair", "series", "t1"]


# Refusals and bounds


def test_a_root_that_is_not_a_folder(tmp_path):
    assert refusal(tmp_path / "missing") == f"{tmp_path / 'missing'}: not a folder"
    file = touch(tmp_path, "scan.nii.gz") / "scan.nii.gz"
    assert refusal(file) == f"{file}: not a folder"


def test_no_case_found_says_what_was_looked_for(tmp_path):
    touch(tmp_path, "notes.txt", "scan.dcm")
    message = refusal(tmp_path)
    assert message.startswith(f"{tmp_path}: no case found")
    assert ".nii, .nii.gz, .mgz, .mgh" in message
    assert "one case per file" in message and "per subfolder" in message
    assert "could not be cases" not in message


def test_no_case_found_names_the_first_problem(tmp_path):
    touch(tmp_path / "deep" / "case", "flair.nii.gz")
    touch(tmp_path, "brainmask.nii.gz")
    message = refusal(tmp_path)
    assert message.startswith(f"{tmp_path}: no case found")
    assert message.endswith(
        "1 entries could not be cases, the first: deep/: holds no image "
        "file (.nii, .nii.gz, .mgz, .mgh) and no DICOM series"
    )


def scandir_refusing(monkeypatch, refused: Path) -> None:
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == refused:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(datasets.os, "scandir", scandir)


def test_an_unreadable_case_folder_is_a_problem(tmp_path, monkeypatch):
    touch(tmp_path / "good", "flair.nii.gz")
    touch(tmp_path / "locked", "flair.nii.gz")
    scandir_refusing(monkeypatch, tmp_path / "locked")
    dataset = find_dataset(tmp_path)
    assert list(summary(dataset)) == ["good"]
    assert one_problem(dataset) == "locked/: cannot be read (Permission denied)"


def test_an_unreadable_root(tmp_path, monkeypatch):
    touch(tmp_path / "good", "flair.nii.gz")
    scandir_refusing(monkeypatch, tmp_path)
    assert refusal(tmp_path) == f"{tmp_path}: cannot be read (Permission denied)"


def test_entries_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DATASET_ENTRIES", 3)
    touch(tmp_path / "full", "a_t1.nii", "a_t2.nii", "a_flair.nii")
    touch(tmp_path / "over", "a_t1.nii", "a_t2.nii", "a_flair.nii", ".hidden")
    dataset = find_dataset(tmp_path)
    assert list(summary(dataset)) == ["full"]
    assert one_problem(dataset) == "over/: holds more than 3 entries"
    touch(tmp_path, "a.nii", "b.nii")
    assert refusal(tmp_path) == f"{tmp_path}: holds more than 3 entries"


def test_no_file_is_opened(tmp_path, monkeypatch):
    touch(tmp_path / "case", "flair.nii.gz", "seg.nii.gz")
    touch(tmp_path, "flat.nii.gz", "flat_seg.nii.gz")

    def refuse(*args, **kwargs):
        raise AssertionError(f"opened {args[0]}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr(nib, "load", refuse)
    assert set(summary(find_dataset(tmp_path))) == {"case", "flat"}


# The dataset


def test_cases_by_name_and_position(tmp_path):
    touch(tmp_path, "b.nii.gz", "a.nii.gz", "c.nii.gz")
    dataset = find_dataset(tmp_path)
    assert dataset.index("a") == 0 and dataset.index("c") == 2
    assert dataset.case("b").name == "b"
    assert dataset.cases[dataset.index("b")] is dataset.case("b")
    with pytest.raises(KeyError):
        dataset.case("d")
    with pytest.raises(ValueError, match="d: no such case in"):
        dataset.index("d")


def test_datasets_compare_by_their_fields(tmp_path):
    touch(tmp_path, "a.nii.gz")
    assert find_dataset(tmp_path) == find_dataset(str(tmp_path))
    assert hash(find_dataset(tmp_path)) == hash(find_dataset(tmp_path))


def test_is_dataset_folder(tmp_path):
    file = touch(tmp_path, "scan.nii.gz") / "scan.nii.gz"
    assert is_dataset_folder(tmp_path) and is_dataset_folder(str(tmp_path))
    assert not is_dataset_folder(file)
    assert not is_dataset_folder(tmp_path / "missing")
