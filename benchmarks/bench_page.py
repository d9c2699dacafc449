"""Benchmark page load, the 3D view's updates and server memory on a BraTS 2013 FLAIR volume.

Run ``python benchmarks/bench_page.py``. Starts the real console script
(``python -m superpixel_annotator.cli FLAIR``) and drives headless Chromium. Prints four
Markdown tables:

* First load: bytes over the wire (headers + encoded bodies of every request, both ways,
  until all three views show full-resolution slices) and the time until then (page time from
  navigation), median of fresh browser contexts. Baseline in the same run: the same page
  fetched with ``Accept-Encoding: identity`` (uncompressed), alternating with the compressed
  loads.
* 3D view: time from the 3D switch's click until the graph shows the head's mesh (plotly.js
  starts its 3D scene then); with the 3D switch on, time from a stroke's ``mouseup`` until
  the 3D graph shows a new mesh trace, and until two animation frames later, when the mesh
  is drawn (medians of 11 strokes, an undo between them); and the server time of
  ``VolumeAnnotator.figure_3d`` alone for a typical tumour annotation (every superpixel that
  is mostly tumour painted with ``Annotation.set_superpixel_labels``).
* Slider steps: time from an arrow key on a view's slider until the view shows the next
  slice's thumbnail (dash-slicer draws it in the browser: the baseline), and until it shows
  that slice at full resolution (asked of the server), medians of 12 steps over the views.
* Server memory: peak RSS (``VmHWM``) of the server process after start, after the page
  loads, and after 10 more strokes (goal < 1 GB on BraTS, 2 GB on the larger grids).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import statistics
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

import _bench_common as common
import ct_volumes
import dash
import numpy as np
from _bench_common import zstd
from dash._utils import to_json

from superpixel_annotator.core.annotation import Annotation
from superpixel_annotator.web.annotator import VolumeAnnotator
from superpixel_annotator.web.callbacks import panels
from superpixel_annotator.web.context import case_data

LOADS = 5
STROKES_3D = 11
STROKES_MEMORY = 10
GOAL_RSS_MB = {"brats": 1000}
"""Peak RSS goal per grid; the larger grids' is issue 16's (a CT-size case open)."""
GOAL_RSS_MB_LARGE = 2000

# The 3D graph's plot element (the dcc.Graph's div that Plotly draws into).
GRAPH_3D = """
() => {
    const root = document.getElementById('annotator-view-3d');
    if (!root) { return null; }
    return [root, ...root.querySelectorAll('div')].find((d) => d.data && d._fullLayout) || null;
}
"""
MESHES_3D = """
() => {
    const gd = (GRAPH_3D)();
    return gd ? gd.data.filter((t) => t.type === 'mesh3d').length : -1;
}
""".replace("GRAPH_3D", GRAPH_3D)
# On mouseup, note the time and the 3D graph's data, then watch every animation frame until
# the graph has new data with more mesh traces (the annotation's mesh next to the outline),
# and note the second frame after that: the new mesh drawn (WebGL draws it in a frame, in
# software on this machine, and the next frames wait for it).
WATCH_3D = """
() => {
    const graph = GRAPH_3D;
    const bench = window.__bench3d = {mouseup: null, changed: null, drawn: null};
    const drawn = (frames) => requestAnimationFrame(() => {
        if (frames > 1) { drawn(frames - 1); } else { bench.drawn = performance.now(); }
    });
    // pointerup: the annotator takes the pointer in drawing mode, so no mouseup follows.
    window.addEventListener('pointerup', () => {
        bench.mouseup = performance.now();
        const gd = graph();
        const before = gd.data;
        const meshes = before.filter((t) => t.type === 'mesh3d').length;
        const watch = () => {
            const now = graph();
            if (now && now.data !== before &&
                now.data.filter((t) => t.type === 'mesh3d').length > meshes) {
                bench.changed = performance.now();
                drawn(2);
            } else {
                requestAnimationFrame(watch);
            }
        };
        requestAnimationFrame(watch);
    }, {capture: true, once: true});
}
""".replace("GRAPH_3D", GRAPH_3D)


# -- first load --------------------------------------------------------------------------------


def first_load(browser, url: str, shape, identity: bool) -> dict:
    """Load the page in a fresh context until the views are usable; bytes and time."""
    headers = {"Accept-Encoding": "identity"} if identity else {}
    context = browser.new_context(viewport=common.VIEWPORT, extra_http_headers=headers)
    context.add_init_script(common.full_slices_probe(shape))
    page = context.new_page()
    log = common.RequestLog(page, url_part="")
    page.goto(url)
    usable_ms = common.wait_full_slices(page)
    origin = page.evaluate("() => performance.timeOrigin")
    common.wait_network_quiet(page, log.pending, quiet_ms=300)
    usable_epoch = origin + usable_ms
    total = {"up": 0, "down": 0}
    by_kind: dict[str, int] = defaultdict(int)
    encodings = set()
    requests = 0
    for request in log.take():
        if request.timing["startTime"] > usable_epoch:
            continue  # started after the views were usable
        sizes = common.request_bytes(request)
        total["up"] += sizes["up"]
        total["down"] += sizes["down"]
        by_kind[kind_of(request.url)] += sizes["up"] + sizes["down"]
        response = request.response()
        if response is not None and sizes["down"] > 5000:
            encodings.add(response.headers.get("content-encoding", "identity"))
        requests += 1
    context.close()
    return {
        "bytes": total["up"] + total["down"],
        "up": total["up"],
        "ms": usable_ms,
        "requests": requests,
        "by_kind": by_kind,
        "encodings": encodings,
    }


def kind_of(url: str) -> str:
    path = urlparse(url).path
    if "_dash-update-component" in path:
        return "Dash callbacks (slices, thumbnails, ...)"
    file_name = path.rsplit("/", 1)[-1]
    if file_name in ("plotly.min.js", "plotly-partial.min.js"):
        return file_name  # Dash's full plotly.js, or the partial bundle in assets/
    if path.endswith(".js"):
        return "other JavaScript"
    if path.endswith(".css"):
        return "CSS"
    if path in ("/_dash-layout", "/_dash-dependencies"):
        return "layout + dependencies"
    if path == "/":
        return "HTML"
    return "other"


def print_loads(loads: dict) -> None:
    print("### First load: until all three views show full-resolution slices\n")
    print(
        f"Fresh browser context each time, median of {LOADS}, localhost; bytes = headers + "
        "encoded bodies of every request started before the views were usable, both ways.\n"
    )
    print("| variant | MB over the wire | time to usable (ms) | requests | encodings |")
    print("|---|---:|---:|---:|---|")
    medians = {}
    for name, label in (
        ("identity", "baseline: `Accept-Encoding: identity` (uncompressed)"),
        ("compressed", "**as served** (Chromium's default `Accept-Encoding`)"),
    ):
        runs = loads[name]
        mb = statistics.median(r["bytes"] for r in runs) / 1e6
        ms = statistics.median(r["ms"] for r in runs)
        count = statistics.median(r["requests"] for r in runs)
        encodings = ", ".join(sorted(set().union(*(r["encodings"] for r in runs))))
        medians[name] = (mb, ms)
        print(f"| {label} | {mb:.2f} | {ms:.0f} | {count:.0f} | {encodings} |")
    ratio_mb = medians["compressed"][0] / medians["identity"][0]
    ratio_ms = medians["compressed"][1] / medians["identity"][1]
    print(f"| ratio as served / baseline | {ratio_mb:.3f} | {ratio_ms:.3f} | | |")
    parts = defaultdict(list)
    for run in loads["compressed"]:
        for kind, size in run["by_kind"].items():
            parts[kind].append(size)
    ranked = sorted(parts.items(), key=lambda item: -statistics.median(item[1]))
    print(
        "\nAs served, by kind (median kB): "
        + ", ".join(f"{kind} {statistics.median(s) / 1000:.0f}" for kind, s in ranked)
        + ".\n",
        flush=True,
    )


# -- 3D view -----------------------------------------------------------------------------------


def figure_3d_server(volume, tumour, superpixels) -> dict:
    """Median ms of ``figure_3d`` for the tumour painted by majority, plus its JSON size."""
    annotator = VolumeAnnotator(dash.Dash("bench"), volume, id="annotator", superpixels=superpixels)
    ids = superpixels.labels.ravel()
    counts = np.bincount(ids, minlength=superpixels.count + 1)
    inside = np.bincount(ids, weights=tumour.ravel(), minlength=superpixels.count + 1)
    labels = np.zeros(superpixels.count + 1, dtype=np.uint8)
    labels[1:][inside[1:] > 0.5 * np.maximum(counts[1:], 1)] = 1
    annotation = Annotation(superpixels)
    annotation.set_superpixel_labels(labels)
    state = annotation.to_state()
    figure_3d = functools.partial(
        panels.figure_3d, annotator.context, case_data=case_data(annotator.initial_case)
    )
    figure_3d(state, True)  # the head outline is computed once, cached
    times, json_times = [], []
    for _ in range(5):
        start = time.perf_counter()
        figure = figure_3d(state, True)
        times.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        body = to_json({"multi": True, "response": {"annotator-view-3d": {"figure": figure}}})
        json_times.append(1000 * (time.perf_counter() - start))
    body = body.encode()
    return {
        "ms": statistics.median(times),
        "json_ms": statistics.median(json_times),
        "superpixels": int(np.count_nonzero(labels)),
        "triangles": sum(len(t["i"]) for t in figure["data"][1:]),
        "raw": len(body),
        "gzip": len(gzip.compress(body, 6)),
        "zstd": len(zstd.compress(body, 3)),
    }


def open_annotator(browser, url: str, volume, *init_scripts: str):
    """A fresh context's page on ``url``, once its views show full slices and the network is
    quiet; returns (context, page, request log)."""
    context = browser.new_context(viewport=common.VIEWPORT)
    for script in (*init_scripts, common.full_slices_probe(volume.data.shape)):
        context.add_init_script(script)
    page = context.new_page()
    log = common.RequestLog(page)
    page.goto(url)
    common.wait_full_slices(page)
    common.wait_network_quiet(page, log.pending)
    return context, page, log


def strokes_3d(browser, url: str, volume, tumour) -> tuple[float, list[dict]]:
    """Ms from the 3D switch's click to the head's mesh in the 3D graph (the page's first
    mesh3d figure: plotly.js's 3D scene starts then), and, with the 3D view on, ms from
    mouseup to a new mesh trace in the 3D graph, per stroke."""
    context, page, log = open_annotator(browser, url, volume, common.FETCH_PROBE)
    clicked = page.evaluate("() => performance.now()")
    page.click("label[for=annotator-show-3d]")
    shown = page.wait_for_function(
        f"() => ({MESHES_3D})() >= 1 && performance.now()", timeout=common.TIMEOUT_MS
    ).json_value()
    switch_ms = shown - clicked
    common.wait_network_quiet(page, log.pending)
    results = []
    for k in range(-1, STROKES_3D):  # k = -1: an untimed warm-up stroke
        fraction = 0.5 if k < 0 else 0.15 + 0.7 * k / max(STROKES_3D - 1, 1)
        meshes = page.evaluate(MESHES_3D)
        page.evaluate(WATCH_3D)
        page.evaluate("() => { window.__benchFetches = []; }")
        log.take()
        common.draw_stroke(page, 0, common.axial_stroke_mm(volume, tumour, fraction))
        page.wait_for_function("() => window.__bench3d.drawn !== null", timeout=30_000)
        common.wait_network_quiet(page, log.pending)
        timing = page.evaluate("() => ({...window.__bench3d, fetches: window.__benchFetches})")
        timing["resources"] = page.evaluate(common.RESOURCE_TIMINGS, timing["mouseup"] - 1)
        figure_bytes = sum(
            common.request_bytes(r)["down"]
            for r in log.take()
            if "view-3d.figure" in (r.post_data or "")
        )
        if k >= 0:
            fetch = next(
                (f for f in timing["fetches"] if f["output"] == "annotator-view-3d.figure"), None
            )
            network = common.match_resource(fetch, timing["resources"]) if fetch else None
            results.append(
                {
                    "total": timing["changed"] - timing["mouseup"],
                    "drawn": timing["drawn"] - timing["mouseup"],
                    "request_at": fetch["start"] - timing["mouseup"] if fetch else None,
                    "round_trip": network["responseEnd"] - network["start"] if network else None,
                    "to_screen": timing["changed"] - network["responseEnd"] if network else None,
                    "bytes": figure_bytes,
                }
            )
        page.click("#annotator-undo")
        page.wait_for_function(f"() => ({MESHES_3D})() === {meshes}", timeout=30_000)
        common.wait_network_quiet(page, log.pending)
    context.close()
    return switch_ms, results


def print_3d(server: dict, switch_ms: float, strokes: list[dict]) -> None:
    print("### 3D view: a stroke until its mesh shows, and `figure_3d` on the server\n")

    def cell(key, scale=1.0):
        values = [s[key] * scale for s in strokes if s[key] is not None]
        return f"{common.median(values):.0f}"

    print("| measure | median | unit |")
    print("|---|---:|---|")
    print(
        "| browser: 3D switch clicked -> the head's mesh in the 3D graph (once) "
        f"| {switch_ms:.0f} | ms |"
    )
    print(
        f"| browser: mouseup -> new mesh trace in the 3D graph ({len(strokes)} strokes) "
        f"| {cell('total')} | ms |"
    )
    print(
        "|   mouseup -> 3D figure request sent (after the edit's response) "
        f"| {cell('request_at')} | ms |"
    )
    print(
        f"|   3D figure request round trip (fetch() -> responseEnd) | {cell('round_trip')} | ms |"
    )
    print(f"|   responseEnd -> mesh in the graph (client) | {cell('to_screen')} | ms |")
    print(
        f"|   3D figure response on the wire (one-stroke annotation) | {cell('bytes', 1e-3)} | kB |"
    )
    print(
        "| browser: mouseup -> two frames after the new mesh trace (the mesh drawn) "
        f"| {cell('drawn')} | ms |"
    )
    print(
        f"| server: `figure_3d` alone, tumour annotation ({server['superpixels']} superpixels, "
        f"{server['triangles']} triangles) | {server['ms']:.0f} | ms |"
    )
    print(f"|   its response JSON (`to_json`) | {server['json_ms']:.0f} | ms |")
    print(
        f"|   its response size: raw / gzip-6 / zstd-3 | {server['raw'] / 1000:.0f} / "
        f"{server['gzip'] / 1000:.0f} / {server['zstd'] / 1000:.0f} | kB |"
    )
    print(flush=True)


# -- slider steps ------------------------------------------------------------------------------

SLIDER_STEPS = 12
# On the next keydown, note the time, then watch every animation frame for the view's first
# trace to show another image (the thumbnail), and for it to show one of the full slice's
# size (decoded in the background).
WATCH_STEP = """
([axis, width, height]) => {
    const root = document.getElementById('annotator-view-' + axis);
    const plot = () => [root, ...root.querySelectorAll('div')].find((d) => d.data && d._fullLayout);
    const before = plot().data[0].source;
    const bench = window.__benchStep = {down: null, thumbnail: null, full: null};
    window.addEventListener('keydown', () => { bench.down = performance.now(); },
                            {capture: true, once: true});
    const checked = new Set();
    const watch = () => {
        const source = plot().data[0].source;
        if (source !== before && bench.thumbnail === null) { bench.thumbnail = performance.now(); }
        if (source !== before && !checked.has(source)) {
            checked.add(source);
            const image = new Image();
            image.onload = () => {
                if (image.naturalWidth === width && image.naturalHeight === height) {
                    bench.full = performance.now();
                }
            };
            image.src = source;
        }
        if (bench.full === null) { requestAnimationFrame(watch); }
    };
    requestAnimationFrame(watch);
}
"""


def slider_steps(browser, url: str, volume) -> list[dict]:
    """Ms from an arrow key on a view's slider to the next slice's thumbnail and to its
    full-resolution image in the view, per step (the views in turn, forth and back)."""
    context, page, log = open_annotator(browser, url, volume)
    sizes = common.view_sizes(volume.data.shape)
    steps = []
    for step in range(SLIDER_STEPS + 1):  # step 0: an untimed warm-up
        axis = step % 3
        page.evaluate(WATCH_STEP, [axis, *sizes[axis]])
        page.focus(f"#annotator-view-{axis} [role=slider]")
        page.keyboard.press("ArrowRight" if (step // 3) % 2 == 0 else "ArrowLeft")
        page.wait_for_function("() => window.__benchStep.full !== null", timeout=30_000)
        common.wait_network_quiet(page, log.pending)
        timing = page.evaluate("() => window.__benchStep")
        if step:
            steps.append({key: timing[key] - timing["down"] for key in ("thumbnail", "full")})
    context.close()
    return steps


def print_slider_steps(steps: list[dict]) -> None:
    print("### Slider steps: an arrow key on a view's slider\n")
    print("| measure | median | unit |")
    print("|---|---:|---|")
    for key, name in (("thumbnail", "its thumbnail"), ("full", "its full-resolution image")):
        median = common.median([step[key] for step in steps])
        print(
            f"| key -> the next slice: {name} in the view ({len(steps)} steps) "
            f"| {median:.0f} | ms |"
        )
    print(flush=True)


# -- memory ------------------------------------------------------------------------------------


def memory_mb(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def plain_strokes(browser, url: str, volume, tumour, count: int) -> None:
    """Draw ``count`` strokes (3D off) in a fresh page, each waited for on the axial view."""
    context, page, log = open_annotator(browser, url, volume)
    selector = common.view(0)
    for k in range(count):
        before = common.overlay(page, selector)
        fraction = 0.1 + 0.8 * k / max(count - 1, 1)
        common.draw_stroke(page, 0, common.axial_stroke_mm(volume, tumour, fraction))
        common.wait_overlay_change(page, before, selector)
        # Undo, so that the next stroke (coarse regions may overlap) changes something too.
        page.keyboard.press("Control+z")
        common.wait_overlay(page, before, selector)
        common.wait_network_quiet(page, log.pending)
    context.close()


def print_memory(steps: list[tuple[str, dict]], goal_mb: int) -> None:
    print("### Server memory (the console script's process, `/proc/<pid>/status`)\n")
    print("| after | VmRSS (MB) | peak VmHWM (MB) | goal |")
    print("|---|---:|---:|---|")
    for what, fields in steps:
        print(f"| {what} | {fields['VmRSS']:.0f} | {fields['VmHWM']:.0f} | < {goal_mb} MB |")
    peak = steps[-1][1]["VmHWM"]
    print(f"\nPeak RSS {peak:.0f} MB: {'within' if peak < goal_mb else 'OVER'} the goal.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=ct_volumes.GRIDS, default="brats")
    args = parser.parse_args()
    if not common.have_data():
        return
    if not common.CHROMIUM.exists():
        print(f"No Chromium at {common.CHROMIUM}; nothing to benchmark.")
        return
    print(common.machine_header("Page benchmark (`benchmarks/bench_page.py`)"))
    print(f"- Grid: {ct_volumes.GRID_TITLES[args.grid]}")
    started = time.perf_counter()
    with common.temp_cache() as cache_dir:
        scan, truth = ct_volumes.write_grid(args.grid, cache_dir)
        volume, tumour, superpixels = common.load_case(cache_dir, scan, truth)
        server_3d = figure_3d_server(volume, tumour, superpixels)
        memory = []
        server = common.annotator_server(cache_dir, scan)
        with server as (url, process), common.chromium() as browser:
            memory.append(
                ("start (volume open, superpixels from the cache)", memory_mb(process.pid))
            )
            loads = {"compressed": [], "identity": []}
            # One untimed load first: the server's first slice and thumbnail requests.
            first_load(browser, url, volume.data.shape, identity=False)
            for _ in range(LOADS):
                for identity in (True, False):
                    run = first_load(browser, url, volume.data.shape, identity)
                    loads["identity" if identity else "compressed"].append(run)
            memory.append((f"{2 * LOADS + 1} page loads", memory_mb(process.pid)))
            print_loads(loads)
            switch_ms, strokes = strokes_3d(browser, url, volume, tumour)
            memory.append((f"{STROKES_3D + 1} strokes with the 3D view on", memory_mb(process.pid)))
            print_3d(server_3d, switch_ms, strokes)
            print_slider_steps(slider_steps(browser, url, volume))
            plain_strokes(browser, url, volume, tumour, STROKES_MEMORY)
            memory.append(
                (f"a page load and {STROKES_MEMORY} more strokes", memory_mb(process.pid))
            )
            print_memory(memory, GOAL_RSS_MB.get(args.grid, GOAL_RSS_MB_LARGE))
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
