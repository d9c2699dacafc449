"""Requests that try to exhaust the server: huge bodies, many files, many jobs, names that
are not text, malformed callback requests that would flood the log.

Each is refused before any work, in one line, and never with a 500; every response carries
the security headers.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import dash
import pytest
from dash_requests import DEPENDENCIES_PATH, LAYOUT_PATH, UPDATE_PATH, EditCallback, layout_props

from superpixel_annotator.core.image_files import Limits
from superpixel_annotator.serve.cli import build_parser
from superpixel_annotator.serve.settings import (
    SettingError,
    settings_from_arguments,
    settings_from_environment,
)
from superpixel_annotator.web.annotator import VolumeAnnotator
from superpixel_annotator.web.app import create_app
from superpixel_annotator.web.callbacks import scans
from superpixel_annotator.web.context import case_data
from superpixel_annotator.web.jobs import ALREADY_RUNNING, BUSY, JobRefused, JobSlots
from superpixel_annotator.web.limits import REQUEST_SLACK_BYTES, ServerLimits
from superpixel_annotator.web.security import MAX_LOG_CHARS, add_security_headers

LIMITS = Limits(max_bytes=3000)
SERVER_LIMITS = ServerLimits(max_files=3, max_jobs=1, queue_seconds=0)
NOT_BASE64 = "data:application/octet-stream;base64,!!!!"


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> dash.Dash:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUPERPIXEL_ANNOTATOR_CACHE", str(tmp_path_factory.mktemp("cache")))
        return create_app(limits=LIMITS, server_limits=SERVER_LIMITS)


@pytest.fixture(scope="module")
def client(app):
    return app.server.test_client()


@pytest.fixture
def annotator(small_case, tmp_path):
    volume, superpixels = small_case
    return VolumeAnnotator(
        dash.Dash(__name__),
        volume,
        id="ann",
        superpixels=superpixels,
        cache_dir=tmp_path,
        limits=LIMITS,
        server_limits=SERVER_LIMITS,
    )


def assert_clean(response) -> None:
    """No server error, no traceback, and the security headers."""
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text[:300]
    assert "Traceback" not in text and 'File "' not in text, text[:300]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


def open_scan(annotator, contents, filenames, session=None) -> dict:
    return scans.open_scan(
        annotator.context,
        lambda progress: None,
        annotator.ids["upload"],
        {
            "contents": contents,
            "filenames": filenames,
            "size": "4.5",
            "saved": None,
            "state": None,
            "case": case_data(annotator.initial_case),
            "session": session,
        },
    )


# Request bodies


def test_the_body_limit_follows_the_upload_limits(app):
    limit = app.server.config["MAX_CONTENT_LENGTH"]
    assert limit == SERVER_LIMITS.request_bytes(LIMITS)
    assert 2 * LIMITS.max_bytes * 4 // 3 + REQUEST_SLACK_BYTES <= limit


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(app, client):
    too_long = str(app.server.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post(
        UPDATE_PATH,
        data=b"{}",
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": too_long},
    )
    assert response.status_code == 413
    assert_clean(response)


def test_an_embedding_app_keeps_its_own_body_limit(small_case, tmp_path):
    host = dash.Dash(__name__)
    host.server.config["MAX_CONTENT_LENGTH"] = 12345
    VolumeAnnotator(host, small_case[0], "ann", superpixels=small_case[1], cache_dir=tmp_path)
    assert host.server.config["MAX_CONTENT_LENGTH"] == 12345


# Uploads


def test_too_many_files_are_refused_before_any_is_decoded(annotator):
    result = open_scan(annotator, [NOT_BASE64] * 4, [f"m{i}.nii" for i in range(4)])
    assert result["case"] is dash.no_update and result["message_color"] == "warning"
    assert "4 files is over the limit of 3 files" in result["message"]


def test_too_many_bytes_in_all_are_refused_before_any_is_decoded(annotator):
    content = NOT_BASE64 + "A" * 3000  # each under the file limit, not all three
    result = open_scan(annotator, [content] * 3, ["a.nii", "b.nii", "c.nii"])
    assert "in all is over the 6.0 kB limit per upload" in result["message"]


@pytest.mark.parametrize(
    "names", [[5], [None], [["a.nii"]], [{"name": "a.nii"}], ["a.nii", 3.5], "a.nii", None]
)
def test_file_names_that_are_not_text_get_one_line(annotator, names):
    contents = [NOT_BASE64] * (len(names) if isinstance(names, list) else 1)
    result = open_scan(annotator, contents, names)
    assert result["case"] is dash.no_update and result["message_color"] == "warning"
    assert result["message"].startswith("upload: ") and "\n" not in result["message"]


def test_read_uploads_checks_names_too(annotator):
    with pytest.raises(scans.VolumeError, match="name of file 1 is not text"):
        scans.read_uploads(annotator.context, [NOT_BASE64], [7])


def test_a_segmentation_whose_name_is_not_text_is_no_server_error(client):
    layout = client.get(LAYOUT_PATH).get_json()
    edit = EditCallback.find(layout, client.get(DEPENDENCIES_PATH).get_json())
    opened = ("annotator-open-segmentation", "contents")
    for name in (5, None, ["a.nii.gz"], {"a": 1}):
        values = {opened: "data:;base64,AAAA", ("annotator-open-segmentation", "filename"): name}
        assert_clean(client.post(UPDATE_PATH, json=edit.body(opened, values)))


# Jobs


def test_a_job_waits_for_a_free_slot_or_is_refused(tmp_path):
    slots = JobSlots(tmp_path, count=1, queue_seconds=0)
    waits = []
    with slots.turn("a", lambda: waits.append(1)):
        refused = pytest.raises(JobRefused, match=re.escape(BUSY))
        with refused, slots.turn("b", lambda: waits.append(2)):
            pass
    assert waits == []  # no time to wait: refused at once
    with slots.turn("b", lambda: None):
        pass


def test_two_slots_run_two_jobs(tmp_path):
    slots = JobSlots(tmp_path, count=2, queue_seconds=0)
    with slots.turn("a", lambda: None), slots.turn("b", lambda: None):
        with pytest.raises(JobRefused, match=re.escape(BUSY)), slots.turn("c", lambda: None):
            pass


def test_a_browser_runs_one_job_at_a_time(tmp_path):
    slots = JobSlots(tmp_path, count=4, queue_seconds=0)
    with slots.turn("same", lambda: None):
        refused = pytest.raises(JobRefused, match=re.escape(ALREADY_RUNNING))
        with refused, slots.turn("same", lambda: None):
            pass
        with slots.turn(None, lambda: None):  # no session: bounded by the slots only
            pass


def test_an_upload_while_the_server_is_busy_says_so(annotator):
    with annotator.context.jobs.turn("someone else", lambda: None):
        result = open_scan(annotator, [NOT_BASE64], ["a.nii"], session="me")
    assert result["message"] == BUSY and result["case"] is dash.no_update


def test_a_second_upload_of_one_browser_says_so(annotator):
    roomy = dataclasses.replace(annotator.context, server_limits=ServerLimits(queue_seconds=0))
    with roomy.jobs.turn("me", lambda: None):
        result = scans.open_scan(
            roomy,
            lambda progress: None,
            annotator.ids["size"],
            {
                "size": "3.5",
                "saved": None,
                "state": None,
                "session": "me",
                "case": case_data(annotator.initial_case),
            },
        )
    assert result["message"] == ALREADY_RUNNING


# Malformed callback requests and the log


def callback_bodies(client) -> list[dict]:
    """A request for each callback but the background upload, with the layout's values."""
    layout = client.get(LAYOUT_PATH).get_json()
    props = layout_props(layout)
    bodies = []
    for dependency in client.get(DEPENDENCIES_PATH).get_json():
        if any(i["id"] == "annotator-upload" for i in dependency["inputs"]):
            continue
        first = dependency["inputs"][0]
        bodies.append(
            EditCallback(dependency, "annotator", props).body((first["id"], first["property"]), {})
        )
    return bodies


@pytest.mark.parametrize("malform", ["wrapped", "truncated", "renamed"])
def test_a_malformed_outputs_spec_is_refused_in_one_short_log_line(client, caplog, malform):
    with caplog.at_level(logging.INFO):
        for body in callback_bodies(client):
            outputs = body["outputs"]
            body["outputs"] = {
                "wrapped": [[o] for o in outputs],
                "truncated": outputs[:-1],
                "renamed": [{**o, "id": o["id"] + "-x"} for o in outputs],
            }[malform]
            assert_clean(client.post(UPDATE_PATH, json=body))
    assert all(len(record.getMessage()) <= MAX_LOG_CHARS + 100 for record in caplog.records)
    assert all(record.exc_info is None for record in caplog.records)


def test_requests_that_are_not_json_are_refused(client):
    for data in (b"x" * 100, b"[]", b"null", b'{"output": 5}'):
        assert_clean(client.post(UPDATE_PATH, data=data, content_type="application/json"))


# Headers


@pytest.mark.parametrize("path", ["/", LAYOUT_PATH, DEPENDENCIES_PATH, "/no-such-page"])
def test_every_response_has_the_security_headers(client, path):
    assert_clean(client.get(path))


def test_the_policy_names_the_inline_scripts_by_hash(app, client):
    policy = client.get("/").headers["Content-Security-Policy"]
    scripts = next(d for d in policy.split("; ") if d.startswith("script-src"))
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert all(digest in scripts for digest in app.csp_hashes())


def test_an_embedding_portal_can_be_allowed_to_frame_the_app():
    host = dash.Dash(__name__)
    host.layout = dash.html.Div()
    add_security_headers(host, "'self' https://portal.example.org")
    response = host.server.test_client().get("/")
    assert (
        "frame-ancestors 'self' https://portal.example.org"
        in (response.headers["Content-Security-Policy"])
    )
    assert "X-Frame-Options" not in response.headers
    with pytest.raises(ValueError, match="CSP sources"):
        add_security_headers(host, "'self'; script-src *")


# Settings


def test_the_limits_have_flags_and_variables():
    args = build_parser().parse_args(
        [
            "--max-files",
            "4",
            "--max-upload-total-mb",
            "5",
            "--max-jobs",
            "3",
            "--queue-seconds",
            "0",
            "--frame-ancestors",
            "'self'  https://a.example",
        ]
    )
    settings = settings_from_arguments(args)
    assert settings.server_limits == ServerLimits(4, 5_000_000, 3, 0.0)
    assert settings.frame_ancestors == "'self' https://a.example"
    assert settings_from_environment(settings.to_environment()) == settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SUPERPIXEL_ANNOTATOR_MAX_FILES", "0"),
        ("SUPERPIXEL_ANNOTATOR_MAX_JOBS", "many"),
        ("SUPERPIXEL_ANNOTATOR_QUEUE_SECONDS", "-1"),
        ("SUPERPIXEL_ANNOTATOR_MAX_UPLOAD_TOTAL_MB", "nan"),
        ("SUPERPIXEL_ANNOTATOR_FRAME_ANCESTORS", "* ; script-src *"),
    ],
)
def test_a_malformed_limit_in_the_environment_names_its_variable(name, value):
    with pytest.raises(SettingError, match=name):
        settings_from_environment({name: value})


def test_the_default_body_limit_admits_the_largest_upload():
    limits = ServerLimits()
    assert limits.total_bytes(Limits()) == 2 * Limits().max_bytes
    assert limits.request_bytes(Limits()) > limits.total_bytes(Limits()) * 4 // 3
