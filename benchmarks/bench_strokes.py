"""Benchmark stroke handling on a BraTS 2013 FLAIR volume: server side, then end to end.

Run ``python benchmarks/bench_strokes.py [--strokes 15] [--skip-browser] [--grid brats]
[--level coarse]``. Prints two Markdown tables; ``--level`` is that of part a's strokes.

a. Server side, no browser: 20 strokes across the tumour on different slices of all three
   views, with undo and redo mixed in. For each operation, the time of the edit callback
   (``web.callbacks.editing.edit``) and the size of its response (Dash's ``{"multi": true,
   "response": ...}`` JSON, raw, gzip level 6 and zstd level 3 as flask-compress serves it).
   The baseline, measured on the same operations in the same run, is the seed design of the
   sample app: per stroke, re-encode every slice of all three views of the (smoothed) label
   volume as overlay PNGs with the project's own ``indexed_png_uri``, sent as whole lists.
   Only the overlay strategy differs.
b. End to end in headless Chromium against the real console script: N strokes drawn with
   the mouse on the axial view across the tumour (an undo between strokes, so that each
   stroke changes something; the pointer rests on the view first, as a user's does, so the
   view has its slice's superpixel ids). From the mouse release (``pointerup``, a capturing
   listener on ``window``, so before the annotator's) to the first animation frame after the
   annotator painted the stroke's labels on its canvas (the new overlay on screen), and to
   the first frame in which the axial view's annotation trace has the server's new source,
   with its parts; and the bytes of the stroke's Dash callback requests on the wire (both
   directions, Chromium's encoded sizes).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import statistics
import time

import _bench_common as common
import ct_volumes
import dash
import numpy as np
from _bench_common import zstd
from dash._utils import to_json

from superpixel_annotator.core.annotation import LEVELS
from superpixel_annotator.core.editing import EditSession
from superpixel_annotator.core.geometry import section, view_geometry
from superpixel_annotator.core.overlays import indexed_png_uri
from superpixel_annotator.web.annotator import VolumeAnnotator
from superpixel_annotator.web.callbacks import editing
from superpixel_annotator.web.callbacks.overlays import (
    STALE,
    overlay_patches,
    stale_slice_callback,
)
from superpixel_annotator.web.context import AnnotatorContext, case_data
from superpixel_annotator.web.ids import STROKE_LEVELS

GOAL_MS = 60
GOAL_KB = 30


# -- a. server side ----------------------------------------------------------------------------


def stroke_path(annotator: VolumeAnnotator, axis: int, rows_cols) -> str:
    """An SVG path in a view's mm coordinates for (row, col) voxel positions."""
    geometry = view_geometry(annotator.initial_case.volume.spacing, axis)
    points = [f"{c * geometry['dx']:.2f},{r * geometry['dy']:.2f}" for r, c in rows_cols]
    return "M" + "L".join(points)


def full_overlays(context: AnnotatorContext, session: EditSession, after, shown) -> list:
    """The seed design's ``overlay_patches``: every slice of every view, from the label volume."""
    labels = context.segmentations.get(session.case, after)
    return [
        [
            indexed_png_uri(section(labels, axis, index), context.palette)
            for index in range(labels.shape[axis])
        ]
        for axis in range(3)
    ]


@contextlib.contextmanager
def overlay_strategy(strategy):
    """Have the edit callback send ``strategy``'s overlays (the package has no hook for it:
    the edit module's ``overlay_patches`` is swapped for the duration)."""
    original = editing.overlay_patches
    editing.overlay_patches = strategy
    try:
        yield
    finally:
        editing.overlay_patches = original


def response_json(annotator: VolumeAnnotator, result: dict) -> str:
    """The body Dash sends for ``edit``'s outputs (``no_update`` outputs left out)."""
    ids = annotator.ids
    outputs = {(ids["annotation"], "data"): result["state"]}
    for axis in range(3):
        outputs[(ids.view("annotation-slices", axis), "data")] = result["slices"][axis]
    outputs[(ids["message"], "children")] = result["message"]
    outputs[(ids["message"], "is_open")] = result["show_message"]
    response: dict = {}
    for (component, prop), value in outputs.items():
        if value is not dash.no_update:
            response.setdefault(component, {})[prop] = value
    return to_json({"multi": True, "response": response})


def operations(annotator: VolumeAnnotator, tumour: np.ndarray, n_strokes: int = 20) -> list:
    """Strokes across the tumour on all three views, with undos and redos mixed in."""
    per_axis = [tumour_slice_list(tumour, axis, n_strokes) for axis in range(3)]
    ops = []
    for k in range(n_strokes):
        axis = k % 3
        index = per_axis[axis][k // 3]
        fraction = 0.15 + 0.7 * ((k * 0.37) % 1.0)
        points = common.tumour_stroke(tumour, axis, index, fraction)
        ops.append(("stroke", axis, index, stroke_path(annotator, axis, points), 1 + k % 3))
        if k % 4 == 1:
            ops.append(("undo",))
        elif k % 4 == 3:
            ops.extend([("undo",), ("redo",)])
    return ops


def tumour_slice_list(tumour: np.ndarray, axis: int, n_strokes: int) -> list[int]:
    count = (n_strokes + 2) // 3
    return common.tumour_slices(tumour, axis, np.linspace(0, 1, count))


def edit_call(annotator: VolumeAnnotator, op, state, level: str = "coarse") -> tuple:
    """The edit callback's action and inputs for ``op``, as the browser sends them: a stroke
    at ``level`` on a view showing slice ``index`` (the others on their middle slice), or a
    button."""
    middle = [size // 2 for size in annotator.volume.data.shape]
    strokes = [None, None, None]
    indices = list(middle)
    if op[0] in ("undo", "redo"):
        action = (op[0], None)
        label = 1
    else:
        _, axis, index, path, label = op
        strokes[axis] = {"path": path, "index": index}
        indices[axis] = index
        action = ("stroke", axis)
    inputs = {
        "strokes": strokes,
        **dict.fromkeys(("undo", "redo", "fill", "fill_accept", "fill_discard"), 1),
        "segmentation": None,
        "segmentation_name": None,
        **{name: level == name for name in STROKE_LEVELS},
        "indices": indices,
        "label": label,
        "state": state,
        "preview": None,
        "case": case_data(annotator.initial_case),
    }
    return action, inputs


def run_edit(annotator: VolumeAnnotator, op, state, strategy=overlay_patches, level="coarse"):
    action, inputs = edit_call(annotator, op, state, level)
    with overlay_strategy(strategy):
        start = time.perf_counter()
        result = editing.edit(annotator.context, action, inputs)
        edit_ms = 1000 * (time.perf_counter() - start)
    start = time.perf_counter()
    body = response_json(annotator, result).encode()
    json_ms = 1000 * (time.perf_counter() - start)
    return result, {
        "edit_ms": edit_ms,
        "json_ms": json_ms,
        "raw": len(body),
        "gzip": len(gzip.compress(body, 6)),
        "zstd": len(zstd.compress(body, 3)),
    }


def stroke_sizes(
    annotator: VolumeAnnotator, ops: list, state: str | None = None, level: str = "coarse"
) -> list[dict]:
    """The numbers of :func:`run_edit` for each stroke of ``ops``, replayed from ``state``."""
    sizes = []
    for op in ops:
        result, numbers = run_edit(annotator, op, state, level=level)
        state = result["state"] if isinstance(result["state"], str) else state
        if op[0] == "stroke":
            sizes.append(numbers)
    return sizes


def stroke_parts(annotator: VolumeAnnotator, ops: list, level: str) -> dict:
    """Median ms of each step of ``edit`` for the strokes of ``ops`` (replayed in order)."""
    times: dict[str, list[float]] = {}
    state = None

    def timed(name, function, *args):
        start = time.perf_counter()
        value = function(*args)
        times.setdefault(name, []).append(1000 * (time.perf_counter() - start))
        return value

    middle = [size // 2 for size in annotator.volume.data.shape]
    context, case = annotator.context, annotator.initial_case
    labels = context.label_values
    for op in ops:
        session = timed("from_state (EditSession)", EditSession, case, state, labels)
        annotation = session.annotation
        if op[0] == "stroke":
            _, axis, index, path, label = op
            changed = timed("paint", session.stroke, axis, index, path, label, level)
            shown = [index if a == axis else middle[a] for a in range(3)]
        else:
            changed = getattr(annotation, op[0])()
            shown = middle
        if changed.size:
            state = timed("to_state", annotation.to_state)
            after = session.shown_after()
            timed("smooth outlines", annotation.label_volume)
            timed("overlay_patches (diff, PNG)", overlay_patches, context, session, after, shown)
    return {name: statistics.median(values) for name, values in times.items()}


def ratio(ours: float, baseline: float) -> str:
    return f"{ours / baseline:.3f}" if baseline else "n/a"


def slices_sent(slices) -> int:
    """Slices rendered into the response (ours marks other touched slices stale instead)."""
    count = 0
    for value in slices:
        if isinstance(value, dict):
            count += sum(op["params"]["value"] != STALE for op in value["operations"])
        elif isinstance(value, list):
            count += len(value)
    return count


def apply(client: list, value) -> list:
    """What the browser does with a view's slices output (a Patch as sent, or a whole list)."""
    if value is dash.no_update:
        return client
    if isinstance(value, list):
        return list(value)
    client = list(client)
    for operation in value["operations"]:
        (index,) = operation["location"]
        client[index] = operation["params"]["value"]
    return client


def visit_stale(annotator: VolumeAnnotator, axis: int, index: int, state) -> dict:
    """What a view gets when it shows a stale slice: that slice's overlay, rendered now."""
    render = stale_slice_callback(annotator.context, axis)
    return render([index, 0.0], state, None, case_data(annotator.initial_case))


def bench_server(volume, tumour, superpixels, level: str) -> None:
    ours = VolumeAnnotator(dash.Dash("ours"), volume, id="annotator", superpixels=superpixels)
    seed = VolumeAnnotator(dash.Dash("seed"), volume, id="annotator", superpixels=superpixels)
    strategies = {"ours": overlay_patches, "seed": full_overlays}
    ops = operations(ours, tumour)
    # Warm up both paths once (imports, PIL, plotly's encoder) on a throwaway state.
    for annotator, strategy in ((ours, overlay_patches), (seed, full_overlays)):
        run_edit(annotator, ops[0], None, strategy, level)

    rows = {"ours": {}, "seed": {}}
    client = [[None] * volume.data.shape[a] for a in range(3)]
    state = None
    same = True
    for op in ops:
        kind = "stroke" if op[0] == "stroke" else "undo/redo"
        results = {}
        # Alternate which one runs first, so that load drifts hit both alike.
        order = ("ours", "seed") if len(rows["ours"].get(kind, [])) % 2 else ("seed", "ours")
        for name in order:
            annotator = ours if name == "ours" else seed
            result, numbers = run_edit(annotator, op, state, strategies[name], level)
            numbers["slices"] = slices_sent(result["slices"])
            rows[name].setdefault(kind, []).append(numbers)
            results[name] = result
        if results["ours"]["state"] != results["seed"]["state"]:
            same = False
        if results["ours"]["state"] is not dash.no_update:
            state = results["ours"]["state"]
        for axis in range(3):
            client[axis] = apply(client[axis], results["ours"]["slices"][axis])
            for index in [i for i, uri in enumerate(client[axis]) if uri == STALE]:
                # the user visits the slice
                client[axis] = apply(client[axis], visit_stale(ours, axis, index, state))
            full = apply([None] * volume.data.shape[axis], results["seed"]["slices"][axis])
            if results["seed"]["slices"][axis] is not dash.no_update and client[axis] != full:
                same = False

    print("### a. Server side: the edit callback per operation (no browser)\n")
    n_strokes = len(rows["ours"]["stroke"])
    n_other = len(rows["ours"]["undo/redo"])
    print(
        f"{n_strokes} strokes at the {level} level across the tumour (axial, coronal, "
        f"sagittal in turn, {volume.data.shape} voxels, {superpixels.count} superpixels) "
        f"and {n_other} undos/redos. Medians per operation; response = Dash's JSON body for "
        "the outputs.\n"
    )
    print(
        "| strategy | operation | n | slices sent | edit ms | to_json ms "
        "| response kB | gzip-6 kB | zstd-3 kB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    keys = ["slices", "edit_ms", "json_ms", "raw", "gzip", "zstd"]
    medians = {}
    for name, label in (("seed", "baseline: full re-render (seed)"), ("ours", "**ours**: patches")):
        for kind in ("stroke", "undo/redo"):
            values = {k: statistics.median(r[k] for r in rows[name][kind]) for k in keys}
            medians[name, kind] = values
            print(
                f"| {label} | {kind} | {len(rows[name][kind])} | {values['slices']:.0f} "
                f"| {values['edit_ms']:.1f} | {values['json_ms']:.1f} "
                f"| {values['raw'] / 1000:.1f} | {values['gzip'] / 1000:.1f} "
                f"| {values['zstd'] / 1000:.1f} |"
            )
    for kind in ("stroke", "undo/redo"):
        o, s = medians["ours", kind], medians["seed", kind]
        cells = " | ".join(ratio(o[k], s[k]) for k in keys)
        print(f"| ratio ours / baseline | {kind} | | {cells} |")
    if not medians["seed", "stroke"]["slices"]:
        print("\n**Warning: the strokes changed nothing; check the stroke geometry.**")
    parts = stroke_parts(ours, ops, level)
    print(
        "\nWhere ours' stroke time goes (medians, same strokes, calling the parts of `edit` "
        "directly): " + ", ".join(f"`{name}` {value:.1f} ms" for name, value in parts.items()) + "."
    )
    print(
        f"\nPatched overlays equal the baseline's full re-render after every operation, "
        f"and both give the same state: {'yes' if same else 'NO'}. State string after the "
        f"run: {len(state)} B.\n",
        flush=True,
    )


# -- b. end to end in Chromium ----------------------------------------------------------------

# On pointerup (window, capturing: before the annotator's handler), note the time and the
# axial annotation trace's source, then watch every animation frame until the annotator has
# painted the stroke on its canvas, and until the trace's source changes.
WATCH_STROKE = """
([selector, graph]) => {
    const source = (SOURCE);
    const bench = window.__bench = {mouseup: null, painted: null, changed: null};
    window.addEventListener('pointerup', () => {
        if (bench.mouseup !== null) { return; }
        bench.mouseup = performance.now();
        bench.before = source(selector);
        const view = window._superpixelStrokeViews[graph];
        const watch = (now) => {
            if (bench.painted === null && view.painted && view.painted.at >= bench.mouseup) {
                bench.painted = now;
            }
            if (source(selector) !== bench.before) {
                bench.changed = performance.now();
            } else {
                requestAnimationFrame(watch);
            }
        };
        requestAnimationFrame(watch);
    }, {capture: true, once: true});
}
""".replace("SOURCE", common.OVERLAY)


# The axial view has the superpixel ids of the slice it shows.
IDS_READY = """
(graph) => {
    const view = (window._superpixelStrokeViews || {})[graph];
    return Boolean(view && view.ids && view.ids.key === view.idsWanted);
}
"""


def output_name(request) -> str:
    try:
        return request.post_data_json.get("output", "?")
    except Exception:  # noqa: BLE001 - a non-JSON body is just unnamed
        return "?"


def is_edit(output: str) -> bool:
    return "annotator-annotation.data" in output and "annotation-slices" in output


def bench_browser(volume, tumour, cache_dir: str, n_strokes: int, scan=common.FLAIR) -> dict:
    """Draw ``n_strokes`` on the axial view; returns per-stroke numbers."""
    shape = volume.data.shape
    axial_index = shape[0] // 2  # the slice the axial view opens on
    mask = tumour[axial_index]
    if not mask.any():
        raise RuntimeError("no tumour on the middle axial slice")
    fractions = np.linspace(0.1, 0.9, n_strokes)
    selector = common.view(0)
    strokes = []
    server = common.annotator_server(cache_dir, scan)
    with server as (url, process), common.chromium() as browser:
        context = browser.new_context(viewport=common.VIEWPORT)
        context.add_init_script(common.FETCH_PROBE)
        context.add_init_script(common.full_slices_probe(shape))
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        log = common.RequestLog(page)
        page.goto(url)
        common.wait_full_slices(page)
        common.wait_network_quiet(page, log.pending)
        log.take()
        graph = page.evaluate(f"() => document.querySelector({selector!r} + ' .dash-graph').id")
        # One untimed warm-up stroke and undo (first use of the code paths in both processes).
        for k in range(-1, n_strokes):
            fraction = 0.5 if k < 0 else fractions[k]
            points_mm = common.axial_stroke_mm(volume, tumour, fraction)
            page.hover(selector + " .dash-graph")
            page.wait_for_function(IDS_READY, arg=graph, timeout=30_000)
            page.evaluate(WATCH_STROKE, [selector, graph])
            page.evaluate("() => { window.__benchFetches = []; }")
            log.take()
            common.draw_stroke(page, 0, points_mm)
            page.wait_for_function("() => window.__bench.changed !== null", timeout=30_000)
            common.wait_network_quiet(page, log.pending)
            timing = page.evaluate("() => ({...window.__bench, fetches: window.__benchFetches})")
            timing["resources"] = page.evaluate(common.RESOURCE_TIMINGS, timing["mouseup"] - 1)
            requests = log.take()
            if k >= 0:
                strokes.append(stroke_numbers(timing, requests))
            # Undo, so that the next stroke changes something again.
            before = common.overlay(page, selector)
            page.click("#annotator-undo")
            common.wait_overlay_change(page, before, selector)
            common.wait_network_quiet(page, log.pending)
            log.take()
        context.close()
        if errors:
            print(f"Page errors: {errors[:3]}")
    return {"strokes": strokes}


def stroke_numbers(timing: dict, requests: list) -> dict:
    """Latency parts and bytes of one stroke from the page's probes and Playwright."""
    mouseup, changed = timing["mouseup"], timing["changed"]
    edits = [f for f in timing["fetches"] if f["output"] and is_edit(f["output"])]
    edit = edits[0] if edits else None
    network = common.match_resource(edit, timing["resources"]) if edit else None
    numbers = {
        "painted": timing["painted"] - mouseup if timing["painted"] is not None else None,
        "total": changed - mouseup,
        "to_request": edit["start"] - mouseup if edit else None,
        "round_trip": network["responseEnd"] - network["start"] if network else None,
        "ttfb": network["responseStart"] - network["requestStart"] if network else None,
        "to_screen": changed - network["responseEnd"] if network else None,
        "requests": len(requests),
        "up": 0,
        "down": 0,
        "edit_up": 0,
        "edit_down": 0,
        "encoding": "",
        "others": [],
    }
    for request in requests:
        sizes = common.request_bytes(request)
        numbers["up"] += sizes["up"]
        numbers["down"] += sizes["down"]
        output = output_name(request)
        if is_edit(output):
            numbers["edit_up"] += sizes["up"]
            numbers["edit_down"] += sizes["down"]
            response = request.response()
            if response is not None:
                numbers["encoding"] = response.headers.get("content-encoding", "identity")
        else:
            numbers["others"].append((output.split(".")[0][:40], sizes["up"] + sizes["down"]))
    return numbers


def print_browser(result: dict) -> None:
    strokes = result["strokes"]
    n = len(strokes)

    def row(what, key, scale=1.0, unit="ms", goal=""):
        values = [s[key] * scale if s[key] is not None else None for s in strokes]
        print(
            f"| {what} | {common.median(values):.1f} | {common.p90(values):.1f} | {unit} | {goal} |"
        )

    print("### b. End to end in headless Chromium: a mouse stroke on the axial view\n")
    encodings = sorted({s["encoding"] for s in strokes})
    print(
        f"{n} strokes across the tumour at varying rows of the middle axial slice, an undo "
        "between strokes. Bytes: all `_dash-update-component` requests the stroke triggered, "
        f"headers + encoded bodies, both directions (response encoding: "
        f"{', '.join(encodings)}).\n"
    )
    print("| measure | median | p90 | unit | goal |")
    print("|---|---:|---:|---|---|")
    row(
        "release -> stroke's labels on screen (annotator's canvas)",
        "painted",
        goal=f"<= {GOAL_MS} ms",
    )
    row("release -> server's annotation in the view (total)", "total")
    row("  release -> edit request sent (client)", "to_request")
    row("  edit request round trip (fetch() -> responseEnd)", "round_trip")
    row("    of which requestStart -> responseStart (server)", "ttfb")
    row("  responseEnd -> annotation on screen (client)", "to_screen")
    print_bytes = [((s["up"] + s["down"]) / 1000) for s in strokes]
    print(
        f"| bytes on the wire per stroke (all requests, both ways) "
        f"| {common.median(print_bytes):.1f} | {common.p90(print_bytes):.1f} | kB "
        f"| <= {GOAL_KB} kB |"
    )
    for what, key in (
        ("  edit request, upload", "edit_up"),
        ("  edit response, download", "edit_down"),
        ("  other requests, both ways", None),
    ):
        if key is None:
            values = [(s["up"] + s["down"] - s["edit_up"] - s["edit_down"]) / 1000 for s in strokes]
        else:
            values = [s[key] / 1000 for s in strokes]
        print(f"| {what} | {common.median(values):.1f} | {common.p90(values):.1f} | kB | |")
    counts = [s["requests"] for s in strokes]
    print(
        f"| Dash requests per stroke | {common.median(counts):.0f} | {common.p90(counts):.0f} | | |"
    )
    others = {}
    for s in strokes:
        for name, size in s["others"]:
            others.setdefault(name, []).append(size)
    if others:
        parts = ", ".join(
            f"`{name}` x{len(sizes)} ({statistics.median(sizes) / 1000:.1f} kB)"
            for name, sizes in sorted(others.items())
        )
        print(f"\nOther requests triggered by the strokes (median size): {parts}.")
    met_ms = sum(s["painted"] is not None and s["painted"] <= GOAL_MS for s in strokes)
    met_kb = sum((s["up"] + s["down"]) / 1000 <= GOAL_KB for s in strokes)
    print(f"\nStrokes within the latency goal: {met_ms}/{n}; within the bytes goal: {met_kb}/{n}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=15, help="browser strokes (part b)")
    parser.add_argument("--skip-browser", action="store_true", help="part a only")
    parser.add_argument("--grid", choices=ct_volumes.GRIDS, default="brats")
    parser.add_argument("--level", choices=LEVELS, default="coarse", help="of part a's strokes")
    args = parser.parse_args()
    if not common.have_data():
        return
    print(common.machine_header("Stroke benchmark (`benchmarks/bench_strokes.py`)"))
    print(f"- Grid: {ct_volumes.GRID_TITLES[args.grid]}")
    started = time.perf_counter()
    with common.temp_cache() as cache_dir:
        scan, truth = ct_volumes.write_grid(args.grid, cache_dir)
        volume, tumour, superpixels = common.load_case(cache_dir, scan, truth)
        bench_server(volume, tumour, superpixels, args.level)
        if args.skip_browser:
            return
        if not common.CHROMIUM.exists():
            print(f"No Chromium at {common.CHROMIUM}; part b skipped.")
            return
        result = bench_browser(volume, tumour, cache_dir, args.strokes, scan)
        print_browser(result)
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
