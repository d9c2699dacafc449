"""A dataset as a team member meets it: the case list, strokes saved on the server without a
click, a reload, the next case, done, and two tabs on one case."""

import shutil
import zipfile

import nibabel as nib
import numpy as np
import pytest
from conftest import page_errors
from test_app_browser import (
    DATA_TO_PAGE,
    HAS_ANNOTATION,
    TIMEOUT_MS,
    phantom_variant,
    stroke_across_coronal_plane,
    view,
    wait_full_slices,
)

from superpixel_annotator.store.labels import LabelStore
from superpixel_annotator.web.auth import add_user

STATUS = "#annotator-save-status"
NAME = "#annotator-name"
CASES = ("case-a", "case-b", "case-c")
SAVE_ROUTE = "_superpixel_annotator/annotator/save"
SHOWS_A_CASE = "(names) => names.includes(document.querySelector('#annotator-name')?.textContent)"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """Three cases of one modality each: the phantom, flipped or brightened."""
    root = tmp_path_factory.mktemp("dataset")
    changes = (lambda d: d, lambda d: np.ascontiguousarray(d[::-1]), lambda d: d * 1.5 + 3)
    for name, change in zip(CASES, changes, strict=True):
        (root / name).mkdir()
        phantom_variant(root / name / f"{name}_flair.nii.gz", change)
    return root


@pytest.fixture(scope="module")
def dataset_url(serve, dataset_dir):
    return serve(str(dataset_dir))


def saved_bytes(dataset_dir, name) -> bytes:
    return (dataset_dir / "labels" / f"{name}_segmentation.nii.gz").read_bytes()


def open_case(page, sample, name):
    page.wait_for_selector(f"{NAME}:text-is('{name}')", timeout=TIMEOUT_MS)
    wait_full_slices(page, sample)


def wait_status(page, text):
    page.wait_for_selector(f"{STATUS}:has-text('{text}')", timeout=TIMEOUT_MS)


def click_case(page, name):
    page.click(f"#annotator-case-table [data-dataset-case='{name}']")


def test_a_case_annotated_and_done_is_on_disk_as_download_gives_it(
    page, dataset_url, dataset_dir, sample, tmp_path
):
    page.goto(dataset_url)
    open_case(page, sample, "case-a")
    wait_status(page, "Not saved yet")
    stroke_across_coronal_plane(page, sample)
    wait_status(page, "Saved as version 1")
    page.click("#annotator-case-done")
    wait_status(page, "Saved as version 2, done")
    with page.expect_download(timeout=TIMEOUT_MS) as download:
        page.click("#annotator-download-button")
    assert download.value.suggested_filename == "case-a_segmentation.nii.gz"
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    downloaded = nib.load(path)
    saved = nib.load(dataset_dir / "labels" / "case-a_segmentation.nii.gz")
    np.testing.assert_array_equal(np.asarray(saved.dataobj), np.asarray(downloaded.dataobj))
    np.testing.assert_array_equal(saved.affine, downloaded.affine)
    assert np.count_nonzero(np.asarray(saved.dataobj)) > 0
    with page.expect_download(timeout=TIMEOUT_MS) as export:
        page.click("#annotator-export")
    export.value.save_as(tmp_path / "export.zip")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        assert sorted(archive.namelist()) == ["case-a_segmentation.nii.gz", "statistics.csv"]
        assert archive.read("case-a_segmentation.nii.gz") == saved_bytes(dataset_dir, "case-a")

    page.keyboard.press("n")  # Next unfinished
    open_case(page, sample, "case-b")
    page.reload()
    open_case(page, sample, "case-b")
    page.wait_for_selector("#annotator-case-progress:has-text('1 / 3 done')")
    page.wait_for_selector("[data-dataset-case='case-a'] td:text-is('done')")
    page.click("#annotator-case-previous")
    open_case(page, sample, "case-a")
    wait_status(page, "Saved as version 2, done")
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    versions = LabelStore(dataset_dir / "labels").versions("case-a")
    assert [(v.number, v.done, v.user) for v in versions] == [
        (2, True, "local"),
        (1, False, "local"),
    ]
    assert page_errors(page) == []


def test_changes_the_server_did_not_get_are_saved_when_the_case_opens_again(
    page, dataset_url, dataset_dir, sample
):
    page.goto(dataset_url)
    open_case(page, sample, "case-b")
    wait_status(page, "Not saved yet")
    page.route(f"**/{SAVE_ROUTE}", lambda route: route.abort())
    stroke_across_coronal_plane(page, sample)
    page.wait_for_selector("#annotator-message:has-text('the server did not answer')")
    page.unroute(f"**/{SAVE_ROUTE}")
    page.reload()
    open_case(page, sample, "case-b")
    wait_status(page, "Saved as version 1")
    saved = nib.load(dataset_dir / "labels" / "case-b_segmentation.nii.gz")
    assert np.count_nonzero(np.asarray(saved.dataobj)) > 0
    # The only error is the save the route aborted.
    assert [e for e in page_errors(page) if "ERR_FAILED" not in e] == []


def test_two_tabs_on_one_case_get_the_conflict_and_lose_nothing(
    browser, page, dataset_url, dataset_dir, sample
):
    other = page.context.new_page()
    other.console_errors = []
    other.on("console", lambda m: m.type == "error" and other.console_errors.append(m.text))
    other.on("pageerror", lambda error: other.console_errors.append(str(error)))
    for tab in (page, other):
        tab.goto(dataset_url)
        # The case it opens first (the first unfinished, or the one this browser showed).
        tab.wait_for_function(SHOWS_A_CASE, arg=list(CASES), timeout=TIMEOUT_MS)
        click_case(tab, "case-c")
        open_case(tab, sample, "case-c")
        wait_status(tab, "Not saved yet")
    stroke_across_coronal_plane(page, sample)
    wait_status(page, "Saved as version 1")
    stroke_across_coronal_plane(other, sample)
    other.wait_for_selector("#annotator-message:has-text('saved version 1 of case-c')")
    other.click("#annotator-keep-mine")
    wait_status(other, "Saved as version 2")
    store = LabelStore(dataset_dir / "labels")
    assert [v.number for v in store.versions("case-c")] == [2, 1]
    assert page_errors(page) == []
    # The refused save is the only error the second tab logs: Chromium reports the 409.
    assert [error for error in page_errors(other) if "status of 409" not in error] == []


@pytest.fixture(scope="module")
def team_url(serve, tmp_path_factory, dataset_dir):
    """A server of a copy of the dataset, with two users who log in."""
    root = tmp_path_factory.mktemp("team")
    for name in CASES[:2]:
        shutil.copytree(dataset_dir / name, root / "dataset" / name)
    users = root / "users.txt"
    for name in ("alice", "bob"):
        add_user(users, name, f"{name}-password")
    return serve(str(root / "dataset"), "--users", str(users)), root / "dataset"


def logged_in_page(browser, name):
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000},
        http_credentials={"username": name, "password": f"{name}-password"},
    )
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    return page


def test_two_users_lock_a_case_and_every_version_names_its_user(browser, team_url, sample):
    url, root = team_url
    alice, bob = logged_in_page(browser, "alice"), logged_in_page(browser, "bob")
    for user in (alice, bob):
        user.goto(url)
        open_case(user, sample, "case-a")
    stroke_across_coronal_plane(alice, sample)
    wait_status(alice, "Saved as version 1")
    bob.reload()
    open_case(bob, sample, "case-a")
    wait_status(bob, "alice is editing this case until")
    # Read-only for bob: pressing on a view starts no stroke.
    point = bob.wait_for_function(DATA_TO_PAGE, arg=[view(0), 100, 100]).json_value()
    bob.mouse.move(*point)
    bob.mouse.down()
    assert bob.evaluate("() => window._superpixelStrokeActive") is None
    bob.mouse.up()
    click_case(bob, "case-b")
    open_case(bob, sample, "case-b")
    stroke_across_coronal_plane(bob, sample)
    wait_status(bob, "Saved as version 1")
    store = LabelStore(root / "labels")
    assert [(v.case, v.user) for name in CASES[:2] for v in store.versions(name)] == [
        ("case-a", "alice"),
        ("case-b", "bob"),
    ]
    assert page_errors(alice) == [] and page_errors(bob) == []
    for user in (alice, bob):
        user.context.close()
