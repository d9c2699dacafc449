"""Shared helpers of the browser benchmarks (``bench_strokes.py``, ``bench_page.py``).

Not a benchmark itself: BraTS paths, tumour strokes, the real console-script server, headless
Chromium with the project's flags, in-page JavaScript probes and small statistics.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

try:  # what flask-compress uses for zstd
    from compression import zstd
except ImportError:  # Python < 3.14
    from backports import zstd  # noqa: F401 - re-exported for the benchmarks

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared/data/brats2013"
CASE_DIR = DATA_DIR / "brats_2013_pat0005_1"
FLAIR = CASE_DIR / "Flair_subtrMeanDivStd.nii.gz"
TRUTH = CASE_DIR / "OTMultiClass.nii.gz"

# The browser-driving helpers are the tests' own: one copy of each.
sys.path[:0] = [str(REPO / "tests" / "browser"), str(REPO / "tests")]
# (tests/browser/conftest.py; everything below is re-exported for the benchmark scripts)
from conftest import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402, F401
from test_app_browser import (  # noqa: E402, F401
    DATA_TO_PAGE,
    NO_SHAPES,
    OVERLAY,
    PLOT,
    draw_stroke,
    overlay,
    view,
    wait_overlay,
    wait_overlay_change,
)

VIEWPORT = {"width": 1400, "height": 1000}
STARTUP_TIMEOUT_S = 120
TIMEOUT_MS = 60_000
UPDATE_URL = "_dash-update-component"

# Installed before any page script (SIZES replaced by each view's full (width, height)): every
# animation frame, check whether all three views show a full-resolution slice and position
# indicators, and note the page time of the first frame they do in ``window.__benchFullAt``.
# Image sizes are read from decoded images, cached per source, so the check stays synchronous:
# Playwright's wait_for_function takes a Promise for a truthy result and returns at once.
FULL_SLICES_PROBE = """
(() => {
    const sizes = SIZES;
    const decoded = new Map();
    window.__benchFullAt = null;
    const plot = PLOT;
    const size = (source) => {
        if (!decoded.has(source)) {
            decoded.set(source, null);
            const image = new Image();
            image.onload = () => decoded.set(source, [image.naturalWidth, image.naturalHeight]);
            image.src = source;
        }
        return decoded.get(source);
    };
    const check = () => {
        for (let axis = 0; axis < 3; axis++) {
            const gd = plot('#annotator-view-' + axis);
            if (!gd || !gd.data || !gd.data.length || !gd.data[0].source) { return false; }
            const wh = size(gd.data[0].source);
            const indicators = gd.data.filter((trace) => trace.type === 'scatter').length;
            if (!wh || wh[0] !== sizes[axis][0] || wh[1] !== sizes[axis][1] || indicators < 2) {
                return false;
            }
        }
        return true;
    };
    const loop = () => {
        if (check()) {
            window.__benchFullAt = performance.now();
        } else {
            requestAnimationFrame(loop);
        }
    };
    requestAnimationFrame(loop);
})();
""".replace("PLOT", PLOT)
# Installed before any page script: names and times every Dash callback request (fetch) in the
# page. ``end`` (body read through a clone) waits for the main thread; use Resource Timing's
# ``responseEnd`` for network timestamps (``RESOURCE_TIMINGS``).
FETCH_PROBE = """
(() => {
    const original = window.fetch.bind(window);
    performance.setResourceTimingBufferSize(100000);
    window.__benchFetches = [];
    window.fetch = (input, init) => {
        const url = typeof input === 'string' ? input : input.url;
        if (!url.includes('UPDATE_URL')) { return original(input, init); }
        const record = {start: performance.now(), output: null, headers: null, end: null};
        try { record.output = JSON.parse(init.body).output; } catch (e) {}
        window.__benchFetches.push(record);
        return original(input, init).then((response) => {
            record.headers = performance.now();
            response.clone().arrayBuffer().then(() => { record.end = performance.now(); });
            return response;
        });
    };
})();
""".replace("UPDATE_URL", UPDATE_URL)

RESOURCE_TIMINGS = """
(since) => performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('UPDATE_URL') && e.startTime >= since)
    .map((e) => ({start: e.startTime, requestStart: e.requestStart,
                  responseStart: e.responseStart, responseEnd: e.responseEnd}))
""".replace("UPDATE_URL", UPDATE_URL)


def match_resource(record: dict, resources: list[dict]) -> dict | None:
    """The Resource Timing entry of a fetch record (the nearest start time, within 5 ms)."""
    if not resources:
        return None
    best = min(resources, key=lambda r: abs(r["start"] - record["start"]))
    return best if abs(best["start"] - record["start"]) <= 5 else None


def machine_header(title: str) -> str:
    """A few Markdown lines saying what ran where."""
    import dash
    import plotly

    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    try:
        chromium = subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        chromium = "no chromium"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"## {title}\n\n"
        f"- {datetime.datetime.now().isoformat(timespec='seconds')} on {platform.node()}: "
        f"{os.cpu_count()} cores ({cpu}), load average {load} at start\n"
        f"- Python {platform.python_version()}, Dash {dash.__version__}, "
        f"plotly {plotly.__version__}, {chromium}\n"
        f"- Package measured: {package_version()}\n"
        f"- Case: {FLAIR.parent.name}/{FLAIR.name}; medians, baselines measured in this run\n"
    )


def package_version() -> str:
    """Where ``superpixel_annotator`` is imported from, and its git commit if any."""
    import superpixel_annotator

    root = Path(superpixel_annotator.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
        modified = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return f"{root} (not a git checkout)"
    state = f", {len(modified)} uncommitted file(s) under src/" if modified else ", clean"
    return f"{root} (git {commit}{state})"


def have_data() -> bool:
    if FLAIR.exists() and TRUTH.exists():
        return True
    print(f"No BraTS case at {CASE_DIR}; nothing to benchmark.")
    return False


def load_case(cache_dir: str | Path, scan: Path = FLAIR, truth: Path = TRUTH):
    """Volume, tumour mask (ground truth > 0) and superpixels (cached in ``cache_dir``)."""
    from superpixel_annotator.core.superpixels import load_or_compute_superpixels
    from superpixel_annotator.core.volume import load_volume

    volume = load_volume(scan)
    tumour = load_volume(truth).data > 0
    superpixels = load_or_compute_superpixels(volume, cache_dir)
    return volume, tumour, superpixels


def view_axes(axis: int) -> tuple[int, int]:
    """The (rows, cols) volume axes of a view along ``axis``."""
    rows_axis, cols_axis = (a for a in range(3) if a != axis)
    return rows_axis, cols_axis


def tumour_stroke(tumour: np.ndarray, axis: int, index: int, fraction: float) -> np.ndarray:
    """(row, col) voxel vertices of a stroke across the tumour on one slice.

    The stroke runs along the tumour row at ``fraction`` of the tumour's row span, from its
    leftmost to its rightmost tumour voxel, with a slight wiggle through the middle.
    """
    mask = np.take(tumour, index, axis=axis)
    rows = np.flatnonzero(mask.any(axis=1))
    row = int(rows[int(round(fraction * (len(rows) - 1)))])
    cols = np.flatnonzero(mask[row])
    left, right = int(cols.min()), int(cols.max())
    middle = (left + right) / 2
    return np.array(
        [[row, left], [row - 1, (left + middle) / 2], [row + 1, middle], [row, right]],
        dtype=float,
    )


def tumour_slices(tumour: np.ndarray, axis: int, fractions) -> list[int]:
    """Slice indices along ``axis`` at ``fractions`` of the tumour's extent."""
    present = np.flatnonzero(tumour.any(axis=tuple(a for a in range(3) if a != axis)))
    # Stay off the first and last few slices, where the tumour is a few voxels only.
    low, high = np.percentile(present, [15, 85])
    return [int(round(low + f * (high - low))) for f in fractions]


@contextlib.contextmanager
def annotator_server(
    cache_dir: str | Path, scan: Path = FLAIR
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python -m superpixel_annotator.cli SCAN --port <free>``; yields (url, process).

    Waits until the server prints "Running on"; always stops it on exit.
    """
    port = free_port()
    env = {**os.environ, "SUPERPIXEL_ANNOTATOR_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "superpixel_annotator.cli", str(scan), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        said = []
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"server silent too long: {''.join(said)}") from None
            if line is None:
                raise RuntimeError(f"server exited with {process.wait()}: {''.join(said)}")
            said.append(line)
            if "Running on" in line:
                break
        yield f"http://127.0.0.1:{port}/", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def view_sizes(shape) -> list[list[int]]:
    """(width, height) in voxels of the full-resolution slice of each view."""
    sizes = []
    for axis in range(3):
        rows_axis, cols_axis = view_axes(axis)
        sizes.append([shape[cols_axis], shape[rows_axis]])
    return sizes


def full_slices_probe(shape) -> str:
    """The init script that notes when all three views show full-resolution slices."""
    return FULL_SLICES_PROBE.replace("SIZES", str(view_sizes(shape)))


def wait_full_slices(page) -> float:
    """Wait until the page's probe (``full_slices_probe``, an init script) saw full-resolution
    slices in all three views; returns the page time (ms since navigation) when it did."""
    handle = page.wait_for_function("() => window.__benchFullAt", timeout=TIMEOUT_MS)
    return float(handle.json_value())


def axial_stroke_mm(volume, tumour, fraction: float) -> list[tuple[float, float]]:
    """A stroke across the tumour on the axial slice the page opens on, in the view's mm."""
    index = volume.data.shape[0] // 2
    rows_cols = tumour_stroke(tumour, 0, index, fraction)
    return [(c * volume.spacing[2], r * volume.spacing[1]) for r, c in rows_cols]


def request_bytes(request) -> dict:
    """Bytes of one finished request on the wire, both directions (headers + encoded body)."""
    sizes = request.sizes()
    return {
        "up": sizes["requestHeadersSize"] + sizes["requestBodySize"],
        "down": sizes["responseHeadersSize"] + max(sizes["responseBodySize"], 0),
    }


def wait_network_quiet(page, pending: set, quiet_ms: float = 400, timeout_s: float = 30) -> None:
    """Wait until no tracked request is pending for ``quiet_ms``."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        if pending:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif (time.monotonic() - quiet_since) * 1000 >= quiet_ms:
            return
        page.wait_for_timeout(25)
    raise TimeoutError("network never went quiet")


class RequestLog:
    """Tracks a page's Dash callback requests: pending ones and finished ones."""

    def __init__(self, page, url_part: str = UPDATE_URL) -> None:
        self.pending: set = set()
        self.finished: list = []
        self.failed: list = []
        self.url_part = url_part
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_finished)
        page.on("requestfailed", self._on_failed)

    def _on_request(self, request) -> None:
        if self.url_part in request.url:
            self.pending.add(request)

    def _on_finished(self, request) -> None:
        if request in self.pending:
            self.pending.discard(request)
            self.finished.append(request)

    def _on_failed(self, request) -> None:
        if request in self.pending:
            self.pending.discard(request)
            self.failed.append(request)

    def take(self) -> list:
        taken, self.finished = self.finished, []
        return taken


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def p90(values) -> float:
    values = sorted(v for v in values if v is not None)
    if not values:
        return float("nan")
    return float(np.percentile(values, 90, method="linear"))


def temp_cache() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="superpixel-bench-cache-")
