"""Load test: simulated users stroke and undo at once against the real gunicorn deployment.

Run ``python benchmarks/bench_load.py [--seconds 20]``. Starts the Dockerfile's entry point
(``python -m superpixel_annotator.serve``, read from the Dockerfile as the deployment tests
do) on loopback with 2 workers and the bundled phantom. Then, for 1, 4 and 16 users, each a
thread with its own HTTP connection and its own annotation state, sends Dash callback
requests (POST ``/_dash-update-component``) back to back for ``--seconds``: strokes across
the head on random slices of all three views, with an undo for about one request in four.
The request bodies are built from the server's ``/_dash-layout`` and ``/_dash-dependencies``
(``tests/dash_requests.py``), as the browser builds them.

Each user replays its own script of 60 operations, prepared before the run on a local copy
of the annotation so that every operation changes it (coarse regions may already hold a
stroke's label). Errors: a response that is not 200, one without a new annotation state, or
one whose state differs from the script's (checked after the run). Prints a Markdown table:
users, requests, requests/s, median and p95 latency, errors, and the CPU the load generator
itself used (it shares the machine with the server).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import os
import platform
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import _bench_common as common
import dash
import gunicorn
import numpy as np
import requests
from conftest import free_port, wait_until_serving
from dash_requests import (
    DEPENDENCIES_PATH,
    LAYOUT_PATH,
    NO_STATE,
    UPDATE_PATH,
    EditCallback,
)
from test_deployment import arguments_of, exec_form, here, server_env

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.superpixels import Superpixels, load_or_compute_superpixels
from superpixel_annotator.core.volume import Volume, load_volume
from superpixel_annotator.web.app import sample_path

USERS = (1, 4, 16)
WORKERS = 2
OPERATIONS = 60
UNDO_SHARE = 0.25
WARM_UP_S = 3
TIMEOUT_S = 60


@dataclass(frozen=True)
class Operation:
    """One request of a user's script, and the labels the annotation has after it."""

    kind: str  # "stroke" or "undo"
    labels_digest: bytes
    axis: int = 0
    index: int = 0
    path: str = ""
    label: int = 0


def digest(labels: np.ndarray) -> bytes:
    return hashlib.blake2b(labels.tobytes(), digest_size=16).digest()


def head_stroke(rng, head: np.ndarray, spacing) -> tuple[int, int, str, np.ndarray]:
    """A freehand stroke from a random point of the head on a random slice of a random view.

    Returns the axis, the slice index, the SVG path in the view's mm (as Plotly sends it) and
    the same vertices as (row, col) voxel coordinates.
    """
    axis = int(rng.integers(3))
    areas = head.sum(axis=tuple(a for a in range(3) if a != axis))
    index = int(rng.choice(np.flatnonzero(areas >= 0.3 * areas.max())))
    rows_axis, cols_axis = common.view_axes(axis)
    dy, dx = spacing[rows_axis], spacing[cols_axis]
    inside = np.argwhere(np.take(head, index, axis=axis))
    row, col = inside[rng.integers(len(inside))]
    vertices = int(rng.integers(10, 40))
    along = np.linspace(0, rng.uniform(10, 40), vertices)  # mm
    angle = rng.uniform(0, 2 * np.pi)
    wobble = rng.normal(0, 0.5, size=(2, vertices))
    xs = np.round(col * dx + along * np.cos(angle) + wobble[0], 2)
    ys = np.round(row * dy + along * np.sin(angle) + wobble[1], 2)
    path = "M" + "L".join(f"{float(x)},{float(y)}" for x, y in zip(xs, ys, strict=True))
    return axis, index, path, np.column_stack([ys / dy, xs / dx])


def user_script(seed: int, volume: Volume, superpixels: Superpixels, labels) -> list[Operation]:
    """``OPERATIONS`` strokes and undos, each of which changes the annotation."""
    rng = np.random.default_rng(seed)
    head = superpixels.labels > 0
    annotation = Annotation(superpixels)
    script = []
    while len(script) < OPERATIONS:
        if annotation.can_undo and rng.random() < UNDO_SHARE:
            annotation.undo()
            script.append(Operation("undo", digest(annotation.superpixel_labels)))
            continue
        axis, index, path, rows_cols = head_stroke(rng, head, volume.spacing)
        label = int(rng.choice(labels))
        if annotation.paint(axis, index, rows_cols, label).size:
            after = digest(annotation.superpixel_labels)
            script.append(Operation("stroke", after, axis, index, path, label))
    return script


@dataclass
class UserRun:
    """What one user saw: latencies, errors, and the states to check against its script."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    states: list[tuple[int, str]] = field(default_factory=list)  # (script position, state)
    finished_at: float = 0.0


def run_user(
    url: str,
    edit: EditCallback,
    script: list[Operation],
    start: threading.Barrier,
    stop_at: list[float],
    run: UserRun,
) -> None:
    """Send the script's requests back to back, from an empty annotation, until ``stop_at``."""
    session = requests.Session()
    state, position, clicks = None, 0, 0
    start.wait()
    while time.perf_counter() < stop_at[0]:
        operation = script[position]
        if operation.kind == "undo":
            clicks += 1
            body = edit.button("undo", state, clicks)
        else:
            body = edit.stroke(
                state, operation.axis, operation.index, operation.path, operation.label
            )
        began = time.perf_counter()
        try:
            response = session.post(url + UPDATE_PATH, json=body, timeout=TIMEOUT_S)
            new_state = edit.new_state(response.json()) if response.status_code == 200 else NO_STATE
        except (requests.RequestException, ValueError):
            new_state = NO_STATE
        run.latencies_ms.append((time.perf_counter() - began) * 1000)
        if isinstance(new_state, str):
            run.states.append((position, new_state))
            state, position = new_state, (position + 1) % len(script)
        else:
            run.errors += 1
        if position == 0:
            state = None  # a new session: the script starts from an empty annotation
    run.finished_at = time.perf_counter()
    session.close()


def wrong_states(runs: list[UserRun], scripts, superpixels: Superpixels) -> int:
    """How many returned states differ from what the users' scripts lead to."""
    wrong = 0
    for run, script in zip(runs, scripts, strict=True):
        for position, state in run.states:
            labels = Annotation.from_state(superpixels, state).superpixel_labels
            wrong += digest(labels) != script[position].labels_digest
    return wrong


def load(url: str, edit: EditCallback, scripts, seconds: float) -> tuple[list[UserRun], float]:
    """Run one user per script for ``seconds``; returns the runs and the elapsed time."""
    runs = [UserRun() for _ in scripts]
    start = threading.Barrier(len(scripts) + 1)
    stop_at = [float("inf")]
    threads = [
        threading.Thread(target=run_user, args=(url, edit, script, start, stop_at, run))
        for script, run in zip(scripts, runs, strict=True)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.join()
    return runs, max(run.finished_at for run in runs) - began


@contextlib.contextmanager
def deployment(cache_dir: str) -> Iterator[str]:
    """The Docker image's entry point with ``WORKERS`` workers on a loopback port."""
    port = free_port()
    variables = {"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(WORKERS)}
    process = subprocess.Popen(
        here(exec_form(arguments_of("ENTRYPOINT")[-1])),
        env=server_env(cache_dir, **variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_serving(process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def header(seconds: float) -> str:
    load_average = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        "## Load: simulated users against gunicorn\n\n"
        f"- {datetime.datetime.now().isoformat(timespec='seconds')}: {os.cpu_count()} cores "
        f"shared by server and load generator, load average {load_average} at start\n"
        f"- Python {platform.python_version()}, Dash {dash.__version__}, gunicorn "
        f"{gunicorn.__version__}: {WORKERS} workers of 4 threads, bound to loopback\n"
        f"- Package measured: {common.package_version()}\n"
        f"- Bundled phantom; {seconds:g} s per row, after a {WARM_UP_S} s warm-up\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="duration of each row")
    seconds = parser.parse_args().seconds

    with common.temp_cache() as cache_dir:
        volume = load_volume(sample_path())
        superpixels = load_or_compute_superpixels(volume, cache_dir)
        with deployment(cache_dir) as url:
            layout = requests.get(url + LAYOUT_PATH, timeout=TIMEOUT_S).json()
            dependencies = requests.get(url + DEPENDENCIES_PATH, timeout=TIMEOUT_S).json()
            edit = EditCallback.find(layout, dependencies)
            scripts = [
                user_script(seed, volume, superpixels, edit.label_values())
                for seed in range(max(USERS))
            ]
            print(header(seconds))
            load(url, edit, scripts[:4], WARM_UP_S)
            print("| users | requests | requests/s | median ms | p95 ms | errors | client CPU |")
            print("|---:|---:|---:|---:|---:|---:|---:|")
            for users in USERS:
                cpu_before = time.process_time()
                runs, elapsed = load(url, edit, scripts[:users], seconds)
                client_cpu = (time.process_time() - cpu_before) / elapsed
                latencies = [ms for run in runs for ms in run.latencies_ms]
                errors = sum(run.errors for run in runs)
                errors += wrong_states(runs, scripts[:users], superpixels)
                print(
                    f"| {users} | {len(latencies)} | {len(latencies) / elapsed:.1f} "
                    f"| {np.median(latencies):.1f} | {np.percentile(latencies, 95):.1f} "
                    f"| {errors} | {client_cpu:.2f} |"
                )


if __name__ == "__main__":
    main()
