"""Beyond one machine: superpixels of an upload computed by a Celery worker through Redis.

Needs Debian's ``redis-server`` (CI installs it); everything runs on loopback.
"""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import free_port, wait_until_serving
from test_app_browser import (
    HAS_ANNOTATION,
    TIMEOUT_MS,
    open_annotator,
    phantom_variant,
    stroke_across_coronal_plane,
    upload_scan,
    view,
)

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def start(command: list[str], env: dict, markers: tuple[str, ...]):
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return process, wait_until_serving(process, markers)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Redis, one Celery worker and the gunicorn launcher, all given the same broker and
    cache; yields (URL, the worker's output lines)."""
    redis_port, web_port = free_port(), free_port()
    broker = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        **os.environ,
        "SUPERPIXEL_ANNOTATOR_CACHE": str(tmp_path_factory.mktemp("shared-cache")),
        "SUPERPIXEL_ANNOTATOR_CELERY_BROKER": broker,
        "PORT": str(web_port),
    }
    processes = []
    try:
        redis_args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        processes.append(start([REDIS_SERVER, *redis_args], env, ("Ready to accept",))[0])
        worker, worker_output = start(
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "superpixel_annotator.wsgi:celery_app",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
            ],
            env,
            ("ready.",),
        )
        processes.append(worker)
        launcher = [sys.executable, "-m", "superpixel_annotator.serve", "--celery-broker", broker]
        processes.append(start(launcher, env, ("Listening at",))[0])
        yield f"http://127.0.0.1:{web_port}/", worker_output
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


def test_upload_is_computed_by_the_celery_worker(page, deployment, sample, tmp_path):
    url, worker_output = deployment
    path = tmp_path / "celery_phantom.nii.gz"
    phantom_variant(path, lambda voxels: voxels[5:])

    open_annotator(page, url, sample)
    uploaded = upload_scan(page, path)
    stroke_across_coronal_plane(page, uploaded)
    page.wait_for_function(HAS_ANNOTATION, arg=view(0), timeout=TIMEOUT_MS)
    assert any("background_callback" in line and "succeeded" in line for line in worker_output)
