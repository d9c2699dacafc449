"""Hostile requests: what one small request can cost the server.

Run ``python benchmarks/bench_hostile.py [--scan FILE]``. Starts the console script
(``python -m superpixel_annotator.cli``) on loopback with a fresh cache, on the BraTS 2013
FLAIR of ``../shared`` when present (else the bundled phantom), and sends each hostile
payload to the callback it targets, as the browser would post it (bodies built from the
server's ``/_dash-layout`` and ``/_dash-dependencies``, see ``tests/dash_requests.py``).

For each request it prints the HTTP status, the time to the answer, the growth of the
server's peak RSS (``VmHWM`` of the server and of any background job process it started,
sampled every 50 ms until the work it caused has ended), and how much the server wrote to
its log. Uploads run as Dash background callbacks: the processes they start are followed
until they end (or for ``--job-seconds``), without polling them as a browser would; their
memory counts as PSS, since a forked job shares most of the server's pages. Goal: at most
1 s and +200 MB for any single request that is not a legitimate upload, and zero HTTP 500.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _bench_common as common
import nibabel as nib
import numpy as np
import requests
from conftest import free_port, wait_until_serving
from dash_requests import DEPENDENCIES_PATH, LAYOUT_PATH, UPDATE_PATH, EditCallback

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.core.client_state import MAX_HISTORY_VOXEL_MARKS, Change, write_state
from superpixel_annotator.core.marks import MAX_VOXEL_MARKS, NO_VOXEL_MARK, VoxelMarks
from superpixel_annotator.core.superpixels import load_or_compute_superpixels
from superpixel_annotator.core.volume import load_volume
from superpixel_annotator.web.app import sample_path

ANNOTATOR = "annotator"
MB = 1e6
GOAL_SECONDS, GOAL_MB = 1.0, 200.0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return found


def status_text(pid: int, field: str) -> str:
    """A field of ``/proc/<pid>/status`` ("" when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def status_kb(pid: int, field: str) -> int:
    """A size field of ``/proc/<pid>/status`` in kB (0 when the process is gone)."""
    text = status_text(pid, field)
    return int(text.split()[0]) if text else 0


def proportional_kb(pid: int) -> int:
    """A process's proportional set size: its pages shared with others (a forked job shares
    most of the server's) count as a share."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory:
    """Samples, until stopped, the server's peak RSS and the memory (PSS) of the processes
    it started since; keeps the peak of their sum and the most such processes at once."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb, self.jobs = pid, 0, 0
        self.existing = set(process_tree(pid))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def new_processes(self) -> list[int]:
        """The live processes the server started since sampling began (an ended job stays a
        zombie until the server reaps it)."""
        new = [p for p in process_tree(self.pid) if p not in self.existing]
        return [p for p in new if status_text(p, "State")[:1] not in ("Z", "")]

    def _run(self) -> None:
        while not self._stop.is_set():
            new = self.new_processes()
            self.jobs = max(self.jobs, len(new))
            total = status_kb(self.pid, "VmHWM") + sum(proportional_kb(p) for p in new)
            self.peak_kb = max(self.peak_kb, total)
            time.sleep(0.05)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def wait_for_jobs(self, seconds: float) -> None:
        """Wait until the processes started since sampling began have ended, or ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.new_processes():
            time.sleep(0.1)


@dataclass
class Outcome:
    name: str
    status: str
    seconds: float
    rss_growth_mb: float
    log_kb: float
    jobs: int
    note: str = ""


class Server:
    """The console script on loopback, its callbacks and its log."""

    def __init__(self, scan: Path, cache_dir: str, package_src: Path | None = None) -> None:
        env = {**os.environ, "SUPERPIXEL_ANNOTATOR_CACHE": cache_dir, "PYTHONUNBUFFERED": "1"}
        if package_src:
            env["PYTHONPATH"] = str(package_src)
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "superpixel_annotator.cli", str(scan), "--port", str(self.port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log = wait_until_serving(self.process)
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()
        layout = self.http.get(self.url + LAYOUT_PATH, timeout=60).json()
        dependencies = self.http.get(self.url + DEPENDENCIES_PATH, timeout=60).json()
        self.edit = EditCallback.find(layout, dependencies)
        self.dependencies = dependencies

    def callback(self, input_id: str) -> EditCallback:
        """The callback that takes the component ``input_id`` as an input."""
        for dependency in self.dependencies:
            if any(item["id"] == input_id for item in dependency["inputs"]):
                return EditCallback(dependency, ANNOTATOR, self.edit.props)
        raise LookupError(input_id)

    def log_chars(self) -> int:
        return sum(len(line) for line in self.log)

    def send(self, name: str, body, job_seconds: float = 0.0) -> Outcome:
        """Post ``body`` (a dict, or bytes sent as is) and measure what it costs."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        before_kb, log_before = status_kb(self.process.pid, "VmHWM"), self.log_chars()
        with TreeMemory(self.process.pid) as memory:
            start = time.perf_counter()
            try:
                reply = self.http.post(
                    self.url + UPDATE_PATH, data=data, headers=headers, timeout=600
                )
                status = str(reply.status_code)
            except requests.RequestException as error:
                status = f"error: {type(error).__name__}"
            if job_seconds:
                memory.wait_for_jobs(job_seconds)
            seconds = time.perf_counter() - start
        growth = max(0, memory.peak_kb - before_kb) / 1000
        log_kb = (self.log_chars() - log_before) / 1000
        return Outcome(name, status, seconds, growth, log_kb, memory.jobs)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def zlib_bomb(decompressed: int, chunk: int = 1 << 20) -> bytes:
    """zlib data that inflates to ``decompressed`` zero bytes."""
    compressor, parts, zeros = zlib.compressobj(9), [], bytes(chunk)
    for _ in range(decompressed // chunk):
        parts.append(compressor.compress(zeros))
    return b"".join(parts) + compressor.flush()


def npy_header(dtype: str, shape: tuple) -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def npz_state(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return base64.b64encode(zlib.compress(buffer.getvalue(), 9)).decode()


def npz_member_bomb(decompressed: int) -> str:
    """A state whose ``labels`` member deflates to ``decompressed`` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("labels.npy", "w", force_zip64=True) as member:
            member.write(npy_header("|u1", (decompressed,)))
            zeros = bytes(1 << 20)
            for _ in range(decompressed >> 20):
                member.write(zeros)
    return base64.b64encode(zlib.compress(buffer.getvalue(), 9)).decode()


def most_voxel_marks_state(count: int, voxel_count: int) -> str:
    """A state of ``count`` superpixels holding the most voxel marks a state may, scattered
    at random over ``voxel_count`` voxels, and a history of the most voxel marks in 8 steps."""
    rng = np.random.default_rng(0)

    def scattered(size: int) -> tuple[np.ndarray, np.ndarray]:
        indices = np.sort(rng.choice(voxel_count, size, replace=False))
        return indices, rng.integers(1, 5, size).astype(np.uint8)

    per_step = MAX_HISTORY_VOXEL_MARKS // 8
    steps = []
    for _ in range(8):
        indices, labels = scattered(per_step)
        unmarked = np.full(per_step, NO_VOXEL_MARK, np.int16)
        no_ids = np.zeros(0, np.int16)
        steps.append(Change(no_ids, no_ids, no_ids, False, indices, unmarked, labels))
    labels, erased = np.zeros(count + 1, np.uint8), np.zeros(count + 1, bool)
    return write_state(labels, erased, steps, [], VoxelMarks(*scattered(MAX_VOXEL_MARKS)))


def zigzag_path(shape_mm: tuple[float, float], vertices: int = 5000) -> str:
    width, height = shape_mm
    points = [(width if k % 2 else 0.0, height * k / vertices) for k in range(vertices)]
    return "M" + "L".join(f"{x:.3f},{y:.3f}" for x, y in points)


def data_url(content: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(content).decode()


def nifti_bytes(image: nib.Nifti1Image | nib.Nifti2Image, level: int = 9) -> bytes:
    return gzip.compress(image.to_bytes(), level)


def scan_variants(scan: Path, count: int) -> list[bytes]:
    """``count`` copies of a scan that differ in one voxel, so that each is a case of its own
    whose superpixels are computed."""
    image = nib.load(scan)
    data = np.asarray(image.dataobj, dtype=np.float32)
    variants = []
    for k in range(count):
        changed = data.copy()
        changed.flat[0] += k + 1
        variants.append(nifti_bytes(nib.Nifti1Image(changed, image.affine), level=1))
    return variants


def payloads(server: Server, scan: Path, cache_dir: str, job_seconds: float) -> list[Callable]:
    """Each hostile request, as a function that sends it and returns its outcome."""
    edit = server.edit
    volume = load_volume(scan)
    superpixels = load_or_compute_superpixels(volume, cache_dir)
    axial_mm = (volume.data.shape[2] * volume.spacing[2], volume.data.shape[1] * volume.spacing[1])
    middle = volume.data.shape[0] // 2
    case = edit.props[f"{ANNOTATOR}-case"]["data"]
    undo = (f"{ANNOTATOR}-undo", "n_clicks")
    state = (f"{ANNOTATOR}-annotation", "data")

    def with_state(name, value):
        return lambda: server.send(name, edit.body(undo, {undo: 1, state: value}))

    foreign = Annotation(superpixels)
    foreign.superpixel_labels[1::2] = 255
    foreign.superpixel_labels[2::2] = 200
    foreign_state = foreign.to_state()
    ids = list(range(1, superpixels.count + 1))
    preview = (f"{ANNOTATOR}-fill-preview", "data")
    accept = (f"{ANNOTATOR}-fill-accept", "n_clicks")
    view_3d = server.callback(f"{ANNOTATOR}-annotation-3d")
    upload = server.callback(f"{ANNOTATOR}-upload")
    contents, names = (f"{ANNOTATOR}-upload", "contents"), (f"{ANNOTATOR}-upload", "filename")
    scan_bytes = scan.read_bytes()
    segmentation = (f"{ANNOTATOR}-open-segmentation", "contents")
    segmentation_name = (f"{ANNOTATOR}-open-segmentation", "filename")

    def uploads(name, files, filenames):
        body = upload.body(contents, {contents: files, names: filenames})
        return lambda: server.send(name, body, job_seconds)

    labels_image = nib.Nifti1Image(np.zeros(volume.source_shape, np.uint8), volume.affine)
    bomb = zlib_bomb(2_000_000_000)
    tag = b"superpixel-annotator superpixel marks, int16, zlib, base64\n"
    labels_image.header.extensions.append(
        nib.nifti1.Nifti1Extension(6, tag + base64.b64encode(bomb))
    )
    marks_bomb = data_url(nifti_bytes(labels_image))
    pattern = (np.indices((256, 256, 256)).sum(axis=0) % 13).astype(np.uint8)
    gzip_bomb = nib.Nifti1Image(pattern, np.diag([5.0, 5.0, 5.0, 1.0]))
    huge = nib.Nifti2Header()
    huge.set_data_shape((2**21, 2**21, 2**22))
    huge.set_data_dtype(np.uint8)
    huge_header = huge.binaryblock + b"\x00" * 4 + b"\x00" * 64
    return [
        with_state("state: zlib bomb (1 GB inflated)", base64.b64encode(zlib_bomb(10**9)).decode()),
        with_state("state: npz member deflate bomb (1.5 GB)", npz_member_bomb(1_500_000_000)),
        with_state(
            "state: npz header of 10^15 elements",
            npz_state({"labels.npy": npy_header("|u1", (10**15,))}),
        ),
        lambda: server.send(
            "stroke on a state of the most voxel marks, scattered, and their history",
            edit.stroke(
                most_voxel_marks_state(superpixels.count, volume.data.size),
                0,
                middle,
                zigzag_path(axial_mm, 4),
                1,
            ),
        ),
        lambda: server.send(
            "stroke: 5000-vertex zig-zag",
            edit.stroke(None, 0, middle, zigzag_path(axial_mm), 1),
        ),
        with_state("state: labels 200 and 255 (not in the palette)", foreign_state),
        lambda: server.send(
            "Fill preview of label 255, accepted",
            edit.body(accept, {accept: 1, preview: {"ids": ids, "labels": [255] * len(ids)}}),
        ),
        lambda: server.send(
            "3D view of a state using labels 200 and 255",
            view_3d.body(
                (f"{ANNOTATOR}-annotation-3d", "data"),
                {
                    (f"{ANNOTATOR}-annotation-3d", "data"): foreign_state,
                    (f"{ANNOTATOR}-show-3d", "value"): True,
                },
            ),
        ),
        lambda: server.send(
            "open segmentation: zlib bomb in the marks extension (2 GB)",
            edit.body(segmentation, {segmentation: marks_bomb, segmentation_name: "bomb.nii.gz"}),
        ),
        lambda: server.send(
            "malformed outputs spec",
            {**edit.stroke(None, 0, middle, zigzag_path(axial_mm, 4), 1), "outputs": [{"id": "x"}]},
        ),
        lambda: server.send(
            "case key of a truncated case file",
            edit.body(
                undo,
                {
                    undo: 1,
                    (f"{ANNOTATOR}-case", "data"): {**case, "key": truncated_case(cache_dir)},
                },
            ),
        ),
        lambda: server.send(
            "upload: a request body of 200 MB of base64",
            json.dumps(
                upload.body(
                    contents, {contents: ["data:;base64," + "A" * 200_000_000], names: ["big.nii"]}
                )
            ).encode(),
            job_seconds,
        ),
        uploads(
            "upload: the scan as 20 modalities",
            [data_url(scan_bytes)] * 20,
            [f"m{k}.nii.gz" for k in range(20)],
        ),
        uploads(
            "upload: gzip bomb, 256^3 at 5 mm", [data_url(nifti_bytes(gzip_bomb))], ["bomb.nii.gz"]
        ),
        uploads(
            "upload: NIfTI-2 header of 2^21 x 2^21 x 2^22", [data_url(huge_header)], ["huge.nii"]
        ),
        uploads("upload: file names that are not strings", [data_url(scan_bytes)], [7]),
        lambda: concurrent_uploads(
            server, upload, contents, names, scan_variants(scan, 12), job_seconds
        ),
    ]


def truncated_case(cache_dir: str) -> str:
    """A valid case key whose file in the cache is cut short."""
    key = "0123456789abcdef0123456789abcdef"
    cases = Path(cache_dir) / "cases"
    cases.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, data=np.zeros(1000))
    (cases / f"{key}.npz").write_bytes(buffer.getvalue()[:300])
    return key


def concurrent_uploads(server, upload, contents, names, variants, job_seconds) -> Outcome:
    """Uploads of different scans at once, never polled."""
    bodies = [
        upload.body(contents, {contents: [data_url(variant)], names: [f"copy{k}.nii.gz"]})
        for k, variant in enumerate(variants)
    ]
    threads = [threading.Thread(target=server.send, args=("", body, 0.0)) for body in bodies]
    before_kb = status_kb(server.process.pid, "VmHWM")
    with TreeMemory(server.process.pid) as memory:
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        memory.wait_for_jobs(job_seconds)
        seconds = time.perf_counter() - start
    growth = max(0, memory.peak_kb - before_kb) / 1000
    name = f"{len(variants)} uploads of different scans at once, never polled"
    return Outcome(name, "-", seconds, growth, 0.0, memory.jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scan", type=Path, default=common.FLAIR if common.FLAIR.exists() else sample_path()
    )
    parser.add_argument(
        "--job-seconds", type=float, default=120.0, help="how long to follow an upload's job"
    )
    parser.add_argument(
        "--package-src",
        type=Path,
        help="serve the package from this source folder, e.g. a git worktree of an older "
        "commit's src/, to measure it as a baseline (default: the installed package)",
    )
    args = parser.parse_args()
    print(common.machine_header("Hostile requests (`benchmarks/bench_hostile.py`)"))
    served = args.package_src or "the installed package"
    print(f"- Scan: {args.scan.name}; served from {served}; a fresh cache; one request at a time\n")
    with tempfile.TemporaryDirectory() as cache_dir:
        server = Server(args.scan, cache_dir, args.package_src)
        try:
            results = [send() for send in payloads(server, args.scan, cache_dir, args.job_seconds)]
            alive = server.process.poll() is None
        finally:
            server.stop()
    print("| request | HTTP | s | peak RSS growth (MB) | log (kB) | job processes | in goal |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in results:
        upload = "upload" in r.name
        bounded = r.seconds <= GOAL_SECONDS and r.rss_growth_mb <= GOAL_MB
        within = "yes" if r.status != "500" and (upload or bounded) else "no"
        cells = (r.name, r.status, f"{r.seconds:.2f}", f"{r.rss_growth_mb:.0f}", f"{r.log_kb:.1f}")
        print("| " + " | ".join((*cells, str(r.jobs), within)) + " |")
    errors = sum(r.status == "500" for r in results)
    print(f"\nHTTP 500 answers: {errors}; server alive at the end: {alive}.")


if __name__ == "__main__":
    main()
