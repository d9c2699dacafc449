"""The simulated annotator of ``benchmarks/simulated_annotator.py``: its strokes and its data."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from superpixel_annotator.core.superpixels import Superpixels

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "simulated_annotator.py"
_spec = importlib.util.spec_from_file_location("simulated_annotator", SCRIPT)
simulated_annotator = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = simulated_annotator  # its dataclasses look their module up
_spec.loader.exec_module(simulated_annotator)


def test_a_stroke_runs_along_the_region_and_stays_inside_it():
    region = np.zeros((30, 30), bool)
    region[10:15, 4:25] = True  # 5 rows by 21 columns
    (start_row, start_col), (stop_row, stop_col) = simulated_annotator.principal_stroke(region)
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

    cases = {case.name: case for case in simulated_annotator.find_cases(tmp_path)}

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
