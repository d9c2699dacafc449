"""The server as the Docker image runs it: the launcher, gunicorn workers, headless Chromium.

The launcher command is read from the Dockerfile's ``ENTRYPOINT``, so the image and these
tests cannot drift apart.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import select
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import free_port, page_errors, wait_until_serving
from test_app_browser import (
    HAS_ANNOTATION,
    NO_ANNOTATION,
    TIMEOUT_MS,
    draw_stroke,
    open_annotator,
    phantom_variant,
    stroke_across_coronal_plane,
    upload_scan,
    view,
    wait_overlay,
    wait_overlay_change,
)
from test_plotly_bundle import DRAWS_TRACE

from superpixel_annotator.serve.launcher import CONFIG_FILE
from superpixel_annotator.serve.settings import FILE_VARIABLE

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = ["python", "-m", "superpixel_annotator.serve"]
CORONAL = view(1)


def final_stage() -> list[tuple[str, str]]:
    """The (INSTRUCTION, arguments) of the Dockerfile's last stage, continuations joined."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def arguments_of(keyword: str) -> list[str]:
    """The arguments of each ``keyword`` instruction of the final stage."""
    return [arguments for found, arguments in final_stage() if found == keyword]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) instruction argument as a list."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), arguments
    return value


def here(command: list[str]) -> list[str]:
    """An image command line with the image's ``python`` replaced by this interpreter."""
    return [sys.executable if command[0] == "python" else command[0], *command[1:]]


def server_env(cache_dir: Path, **variables: str) -> dict[str, str]:
    """This environment without server settings from the outside, plus ``variables``."""
    outside = {"BIND", "PORT", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", FILE_VARIABLE}
    env = {key: value for key, value in os.environ.items() if key not in outside}
    return {**env, "SUPERPIXEL_ANNOTATOR_CACHE": str(cache_dir), **variables}


def parent_pid(pid: int) -> int:
    """The parent of a running process (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s*(\d+)", status, re.MULTILINE).group(1))


def retire_worker(pid: int, master: subprocess.Popen) -> None:
    """Stop a worker of ``master`` gracefully, as gunicorn's worker recycling does.

    Returns once the worker has exited; the master starts a replacement.
    """
    assert parent_pid(pid) == master.pid, f"{pid} is not a worker of this server"
    process = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGTERM)
        exited, _, _ = select.select([process], [], [], 30)
        assert exited, f"worker {pid} did not stop"
    finally:
        os.close(process)


def record_edits(page) -> list[int]:
    """The worker pids of the page's edits (strokes, undos, redos) that changed the state."""
    pids: list[int] = []

    def on_response(response) -> None:
        if (
            urlsplit(response.url).path.endswith("/_dash-update-component")
            and response.status == 200
        ):
            body = json.loads(response.request.post_data or "{}")
            if "annotator-annotation.data" in str(body.get("output", "")):
                pids.append(int(response.headers["x-worker-pid"]))

    page.on("response", on_response)
    return pids


def stroke_above_centre(page, sample) -> None:
    """A stroke on the middle axial slice, anterior to the coronal plane and clear of it."""
    width_mm = sample.data.shape[2] * sample.spacing[2]
    y = 0.3 * sample.data.shape[1] * sample.spacing[1]
    draw_stroke(page, 0, [(0.4 * width_mm, y), (0.5 * width_mm, y), (0.6 * width_mm, y)])


@pytest.fixture(scope="module")
def server(cache_dir):
    """The image's entry point on a free port with two workers; yields (URL, process)."""
    port = free_port()
    process = subprocess.Popen(
        here(exec_form(arguments_of("ENTRYPOINT")[-1])),
        env=server_env(
            cache_dir, PORT=str(port), WEB_CONCURRENCY="2", SUPERPIXEL_ANNOTATOR_DEBUG_HEADERS="1"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_serving(process)
        yield f"http://127.0.0.1:{port}/", process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_dockerfile_runs_the_launcher_as_a_non_root_user_with_a_healthcheck():
    assert [exec_form(a) for a in arguments_of("ENTRYPOINT")] == [LAUNCHER]
    assert [exec_form(a) for a in arguments_of("CMD")] in ([], [[]])  # no FILE: the sample
    user = arguments_of("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    assert "8050" in " ".join(arguments_of("EXPOSE")).split()
    healthcheck = arguments_of("HEALTHCHECK")[-1]
    assert "urllib" in healthcheck and "127.0.0.1" in healthcheck
    assert any("SUPERPIXEL_ANNOTATOR_CACHE=" in env for env in arguments_of("ENV"))
    assert not [a for a in arguments_of("COPY") if "--from" not in a], "sources in the image"
    assert any(" ".join(LAUNCHER) in run for run in arguments_of("RUN")), "no smoke test"


def test_gunicorn_settings_follow_the_environment(monkeypatch):
    def settings(**variables: str) -> dict:
        for name in ("BIND", "PORT", "WEB_CONCURRENCY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(CONFIG_FILE))

    assert settings()["bind"] == ["0.0.0.0:8050"]  # the port the Dockerfile exposes
    assert settings()["workers"] == 2 and settings()["preload_app"]
    assert settings(PORT="9000")["bind"] == ["0.0.0.0:9000"]
    assert settings(PORT="9000", BIND="127.0.0.1:1 unix:/s")["bind"] == ["127.0.0.1:1", "unix:/s"]
    assert settings(WEB_CONCURRENCY="5")["workers"] == 5


def test_healthcheck_command_passes_against_the_server(server):
    url, _ = server
    command = exec_form(arguments_of("HEALTHCHECK")[-1].partition("CMD")[2].strip())
    port = url.rsplit(":", 1)[1].strip("/")
    result = subprocess.run(here(command), env={**os.environ, "PORT": port}, timeout=30)
    assert result.returncode == 0


def test_edits_stay_right_when_each_one_goes_to_another_worker(page, server, sample):
    # Retiring the worker that served each edit forces the next edit onto another process:
    # the annotation must be carried by the page, not kept in a worker.
    url, master = server
    edits = record_edits(page)
    open_annotator(page, url, sample)

    def then_retire(count: int) -> None:
        assert len(edits) == count, edits
        retire_worker(edits[-1], master)

    stroke_across_coronal_plane(page, sample)
    first = wait_overlay_change(page, None)
    page.wait_for_function(HAS_ANNOTATION, arg=CORONAL, timeout=TIMEOUT_MS)
    then_retire(1)
    page.keyboard.press("2")  # the second label
    stroke_above_centre(page, sample)
    wait_overlay_change(page, first)
    then_retire(2)
    page.keyboard.press("Control+z")
    wait_overlay(page, first)
    then_retire(3)
    page.click("#annotator-undo")
    wait_overlay(page, None)
    page.wait_for_function(NO_ANNOTATION, arg=CORONAL, timeout=TIMEOUT_MS)
    then_retire(4)
    page.click("#annotator-redo")
    wait_overlay(page, first)
    page.wait_for_function(HAS_ANNOTATION, arg=CORONAL, timeout=TIMEOUT_MS)

    assert len(edits) == 5
    assert all(before != after for before, after in zip(edits[:-1], edits[1:], strict=True)), edits
    assert not [e for e in page_errors(page) if "TypeError" in e]


def test_two_users_at_once_do_not_see_each_others_labels(browser, page, server, sample):
    url, _ = server
    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    try:
        open_annotator(page, url, sample)
        open_annotator(other, url, sample)
        other.keyboard.press("2")
        stroke_across_coronal_plane(page, sample)  # both strokes in flight together
        stroke_above_centre(other, sample)
        mine = wait_overlay_change(page, None)
        theirs = wait_overlay_change(other, None)
        assert mine != theirs

        # Each undo empties its own page: no labels of the other user came along.
        page.keyboard.press("Control+z")
        other.keyboard.press("Control+z")
        wait_overlay(page, None)
        wait_overlay(other, None)
        page.keyboard.press("Control+y")
        other.keyboard.press("Control+y")
        wait_overlay(page, mine)
        wait_overlay(other, theirs)
    finally:
        other.context.close()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [("missing.nii.gz", None, "no such file"), ("notes.nii", "hello", "not a readable image")],
)
def test_bad_file_stops_the_launcher_with_one_line(tmp_path, cache_dir, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = subprocess.run(
        [*here(LAUNCHER), str(path)],
        env=server_env(cache_dir, PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"superpixel-annotator: {path}: {problem}"), (
        result.stderr
    )


def test_pages_satisfy_their_content_security_policy(page, server, sample):
    url, _ = server
    page.add_init_script(
        "window.cspViolations = [];"
        "document.addEventListener('securitypolicyviolation', (event) =>"
        "  window.cspViolations.push(event.violatedDirective + ' ' + event.blockedURI));"
    )
    headers = page.goto(url).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    open_annotator(page, url, sample)
    stroke_above_centre(page, sample)
    page.click("#annotator-show-3d")
    # The 3D scene's modules start with the first mesh drawn (see plotly_bundle/index.js).
    page.wait_for_function(DRAWS_TRACE, arg=["#annotator-view-3d", "mesh3d"], timeout=TIMEOUT_MS)
    assert page.evaluate("window.cspViolations") == []
    assert not [e for e in page_errors(page) if "Content Security Policy" in e]


def test_upload_is_computed_in_the_background_and_served_by_any_worker(
    page, server, sample, tmp_path
):
    url, _ = server
    path = tmp_path / "shifted_phantom.nii.gz"
    phantom_variant(path, lambda voxels: np.roll(voxels, 3, axis=0))
    open_annotator(page, url, sample)
    uploaded = upload_scan(page, path)
    edits = record_edits(page)
    for _ in range(4):
        stroke_across_coronal_plane(page, uploaded)
        wait_overlay_change(page, None)
        page.keyboard.press("Control+z")
        wait_overlay(page, None)
    assert len(edits) == 8  # every edit of the uploaded scan answered with a new state
