"""The simulated annotator of ``benchmarks/simulated_annotator.py``: its strokes and its data."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from superpixel_annotator import Annotation
from superpixel_annotator.core.superpixels import Superpixels

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "simulated_annotator.py"


def load_benchmark(name: str):
    """The module ``benchmarks/<name>.py``, registered under its name: the scripts import each
    other by name, and dataclasses look their module up."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


simulation = load_benchmark("_simulation")
simulated_classes = load_benchmark("simulated_classes")
simulated_annotator = load_benchmark("simulated_annotator")


def test_a_stroke_runs_along_the_region_and_stays_inside_it():
    region = np.zeros((30, 30), bool)
    region[10:15, 4:25] = True  # 5 rows by 21 columns
    (start_row, start_col), (stop_row, stop_col) = simulation.principal_stroke(region)
    assert sorted([start_col, stop_col]) == [4, 24]
    assert 10 <= start_row < 15 and 10 <= stop_row < 15


def test_the_next_stroke_targets_the_largest_error_of_the_worst_slice():
    truth = np.zeros((3, 20, 20), bool)
    labelled = np.zeros_like(truth)
    truth[1, 2:6, 2:6] = True  # 16 voxels missed on slice 1
    labelled[2, 10:19, 10:12] = True  # 18 voxels wrongly labelled on slice 2
    truth[2, 0:2, 0:2] = True  # and 4 missed there
    ignored = np.zeros_like(truth)
    index, _, label, region = simulated_annotator.next_stroke(labelled, truth, ignored, True)
    assert (index, label, int(region.sum())) == (2, 0, 18)
    # Without an eraser only missed tumour is targeted.
    index, _, label, region = simulated_annotator.next_stroke(labelled, truth, ignored, False)
    assert (index, label, int(region.sum())) == (1, 1, 16)


def test_the_class_step_targets_the_slice_and_class_with_most_missing_voxels():
    truth = np.zeros((3, 20, 20), np.uint8)
    labels = np.zeros_like(truth)
    truth[0, 2:4, 2:7] = 1  # 10 voxels of oedema missed on slice 0
    truth[1, 2:5, 2:6] = 3  # 12 enhancing voxels labelled as core on slice 1
    labels[1, 2:5, 2:6] = 2
    truth[1, 10:15, 10] = 2  # and 5 core voxels missed there: 17 wrong voxels on that slice
    truth[2, 2:4, 2:6] = 2  # 8 + 6 core voxels missed on slice 2, in two regions
    truth[2, 10:12, 10:13] = 2
    ignored = np.zeros((4, *truth.shape), bool)
    index, _, label, region = simulated_classes.next_class_stroke(labels, truth, ignored)
    assert (index, label, int(region.sum())) == (2, 2, 8)
    ignored[2, 2] = True  # core no longer targeted on slice 2
    index, _, label, region = simulated_classes.next_class_stroke(labels, truth, ignored)
    assert (index, label, int(region.sum())) == (1, 3, 12)
    labels[0, 5:10, 5:10] = 1  # 25 voxels of oedema where there is none: the eraser's
    index, _, label, region = simulated_classes.next_class_stroke(labels, truth, ignored)
    assert (index, label, int(region.sum())) == (0, 0, 25)


def test_background_labelled_as_a_class_is_erased():
    z, y, x = np.indices((4, 24, 24))
    superpixels = Superpixels.from_labels(1 + (y // 4) * 6 + x // 4, params={})
    truth = np.zeros((4, 24, 24), np.uint8)
    truth[:, 0:8, 0:4] = 1  # oedema in two superpixels, 32 voxels per slice
    annotation = Annotation(superpixels)
    enhancing = np.unique(superpixels.labels[:, 12:, 12:])  # 9 superpixels, 144 voxels a slice
    annotation.superpixel_labels[enhancing] = 3

    intensities = [truth.astype(np.float32)]
    run = simulated_classes.simulate_classes(annotation, truth, 1, intensities)

    erased = np.flatnonzero(annotation.erased)
    assert erased.size and set(erased) <= set(enhancing)
    assert (annotation.superpixel_labels[erased] == 0).all()
    assert run.scores.shape == (1, 3) and [label for label, _ in run.drawn] == [0]
    assert simulated_classes.relabelled(run.history) == (erased.size, 0, 0)


def test_superpixels_given_back_an_earlier_label_are_counted():
    history = np.array([[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 2, 1], [0, 1, 2, 0]], np.uint8)
    # Superpixel 1 goes 0, 1, 3, 1 and superpixel 3 goes 0, 1, 0: both given back.
    assert simulated_classes.relabelled(history) == (3, 2, 2)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def test_cases_of_every_brats_release_are_found(tmp_path):
    old = tmp_path / "brats2013" / "pat0001"
    for name in ("Flair_subtrMeanDivStd", "OTMultiClass", "T1c_subtrMeanDivStd", "brainmask"):
        touch(old / f"{name}.nii.gz")
    for case, separator, modalities in (
        ("BraTS2021_00000", "_", ("flair", "seg", "t1ce", "t1", "t2")),
        ("BraTS-GLI-00000-000", "-", ("t2f", "seg", "t1c", "t1n", "t2w")),
    ):
        for modality in modalities:
            touch(tmp_path / case / f"{case}{separator}{modality}.nii.gz")
    touch(tmp_path / "BraTS2021_00001" / "BraTS2021_00001_flair.nii.gz")  # no ground truth
    decathlon = tmp_path / "Task01_BrainTumour"
    for folder, name in (("imagesTr", "BRATS_001"), ("labelsTr", "BRATS_001")):
        touch(decathlon / folder / f"{name}.nii.gz")
    touch(decathlon / "imagesTr" / "._BRATS_001.nii.gz")  # macOS metadata in the archive

    cases = {case.name: case for case in simulation.find_cases(tmp_path)}

    assert sorted(cases) == ["BRATS_001", "BraTS-GLI-00000-000", "BraTS2021_00000", "pat0001"]
    assert cases["pat0001"].truth.path.name == "OTMultiClass.nii.gz"
    assert cases["BraTS2021_00000"].t1c.path.name == "BraTS2021_00000_t1ce.nii.gz"
    assert cases["BraTS-GLI-00000-000"].flair.path.name == "BraTS-GLI-00000-000-t2f.nii.gz"
    msd = cases["BRATS_001"]
    assert (msd.flair.volume_index, msd.t1c.volume_index) == (0, 2)
    assert msd.truth.path == decathlon / "labelsTr" / "BRATS_001.nii.gz"


def test_the_benchmark_runs_on_cases_it_has_never_seen(tmp_path):
    """The head phantom, laid out as a BraTS 2021 case without T1c."""
    case = tmp_path / "data" / "BraTS2021_00007"
    case.mkdir(parents=True)
    for source, name in (("head_phantom", "flair"), ("head_phantom_lesion", "seg")):
        os.symlink(
            ROOT / "sample_data" / f"{source}.nii.gz", case / f"BraTS2021_00007_{name}.nii.gz"
        )
    plot = tmp_path / "dice.png"
    command = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--strokes", "3"]
    command += ["--skip-sample-app", "--plot", str(plot)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    rows = [line.split("|") for line in result.stdout.splitlines() if "| ours |" in line]
    assert [row[2].strip() for row in rows] == ["BraTS2021_00007", "**median**"]
    dice_after_3 = float(rows[0][4])
    assert 0.5 < dice_after_3 <= 1.0
    assert "T1c" not in result.stdout
    assert plot.stat().st_size > 0


def test_the_classes_benchmark_runs_on_a_case_with_t1c(tmp_path):
    """The head phantom as a BraTS 2021 case, also as its T1c: label 1 is core, 2 oedema."""
    case = tmp_path / "data" / "BraTS2021_00007"
    case.mkdir(parents=True)
    for source, name in (
        ("head_phantom", "flair"),
        ("head_phantom", "t1ce"),
        ("head_phantom_lesion", "seg"),
    ):
        os.symlink(
            ROOT / "sample_data" / f"{source}.nii.gz", case / f"BraTS2021_00007_{name}.nii.gz"
        )
    plot = tmp_path / "classes.png"
    command = [sys.executable, str(SCRIPT), "--classes", "--data", str(tmp_path / "data")]
    command += ["--strokes", "5", "--plot", str(plot)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    lines = result.stdout.splitlines()
    for pipeline in simulated_classes.PIPELINES:
        table = lines[lines.index(f"{pipeline}:") + 2 :]
        assert table[0] == "| case | mean after 5 | WT after 5 | TC after 5 | ET after 5 |"
        cells = [float(cell) for cell in table[2].split("|")[2:-1]]
        assert 0.5 < cells[0] <= 1.0 and cells[0] == pytest.approx(np.mean(cells[1:]), abs=1e-3)
        assert cells[3] == 1.0  # no enhancing tumour, and none labelled
    assert plot.stat().st_size > 0


def test_separability_is_1_for_a_bright_tumour_and_about_half_for_noise():
    z, y, x = np.indices((12, 12, 12))
    cube = (z // 2, y // 2, x // 2)
    truth = np.logical_and.reduce([(c == 2) | (c == 3) for c in cube])  # 8 of the 216 cubes
    superpixels = Superpixels.from_labels(1 + (cube[0] * 6 + cube[1]) * 6 + cube[2], params={})
    bright = np.where(truth, 3.0, 1.0) + np.random.default_rng(0).normal(0, 0.1, truth.shape)
    assert simulated_annotator.separability(superpixels, bright, truth) == 1.0
    assert simulated_annotator.separability(superpixels, -bright, truth) == 0.0
    noise = np.random.default_rng(1).normal(0, 1, truth.shape)
    assert 0.2 < simulated_annotator.separability(superpixels, noise, truth) < 0.8
