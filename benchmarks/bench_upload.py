"""Benchmark the upload of a CT-sized scan in the browser: from choosing the file to all three
views usable, and whether the progress bar moves meanwhile.

Run ``python benchmarks/bench_upload.py [--runs 2]``. Writes the CT-sized phantom
(``ct_volumes.phantom_ct``, 512x512x400 at 0.7x0.7x1 mm) as a ``.nii.gz`` once. Each run
starts the real console script on the bundled phantom with an empty cache of its own (so
the superpixels are computed, as for a scan never seen), loads the page in headless
Chromium, and uploads the file through the **Open scan…** drop zone. Measured, in wall time
from the upload's start: the server's "Opened" message, and all three views showing
full-resolution slices of the new scan; and the distinct values the progress bar showed.
Goal (issue 16): views usable within 20 s, with the progress bar moving. Prints a Markdown
table, one row per run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _bench_common as common
import ct_volumes
from test_app_browser import MESSAGE, UPLOAD, wait_full_slices

from superpixel_annotator.core.volume import load_volume
from superpixel_annotator.web.app import sample_path

# Every value the progress bar takes (its aria-valuenow), with the page time it took it.
WATCH_PROGRESS = """
() => {
    window.__benchProgress = [];
    const seen = () => {
        const bar = document.querySelector('#annotator-progress .progress-bar');
        const value = bar && bar.getAttribute('aria-valuenow');
        const last = window.__benchProgress[window.__benchProgress.length - 1];
        if (value !== null && value !== undefined && (!last || last[1] !== value)) {
            window.__benchProgress.push([performance.now(), value]);
        }
        requestAnimationFrame(seen);
    };
    requestAnimationFrame(seen);
}
"""


def one_upload(browser, scan_path: Path, scan) -> dict:
    """Upload ``scan_path`` on a fresh server and page; returns the run's numbers."""
    with (
        common.temp_cache() as cache_dir,
        common.annotator_server(cache_dir, sample_path()) as (url, _),
    ):
        page = browser.new_context(viewport=common.VIEWPORT).new_page()
        page.goto(url)
        wait_full_slices(page, load_volume(sample_path()))
        page.evaluate(WATCH_PROGRESS)
        start = time.perf_counter()
        page.set_input_files(UPLOAD, str(scan_path))
        page.wait_for_selector(
            f"{MESSAGE}:has-text('Opened {scan_path.name.split('.')[0]}')", timeout=120_000
        )
        opened = time.perf_counter() - start
        wait_full_slices(page, scan)
        usable = time.perf_counter() - start
        progress = page.evaluate("() => window.__benchProgress")
        page.context.close()
    return {"opened": opened, "usable": usable, "progress": [value for _, value in progress]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    if not common.CHROMIUM.exists():
        print(f"No Chromium at {common.CHROMIUM}; nothing to benchmark.")
        return
    print(common.machine_header("Upload benchmark (`benchmarks/bench_upload.py`)"))
    with tempfile.TemporaryDirectory() as folder, common.chromium() as browser:
        scan_path, _ = ct_volumes.write_grid("ct", folder)
        scan = load_volume(scan_path)
        size_mb = scan_path.stat().st_size / 1e6
        print(f"- Scan: the phantom CT, 512x512x400 at 0.7x0.7x1 mm, {size_mb:.0f} MB .nii.gz\n")
        print("| run | 'Opened' message (s) | views usable (s) | progress values shown |")
        print("|---:|---:|---:|---|")
        for run in range(1, args.runs + 1):
            result = one_upload(browser, scan_path, scan)
            values = ", ".join(result["progress"]) or "none"
            print(f"| {run} | {result['opened']:.1f} | {result['usable']:.1f} | {values} |")


if __name__ == "__main__":
    main()
