"""The ``superpixel-annotator`` command."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

from .app import celery_manager, create_app, load_startup_scan
from .serve import BROKER_VARIABLE
from .superpixels import CacheSettingError
from .volume import DEFAULT_LIMITS, Limits, VolumeError


def _number_at_least(
    minimum: int, convert: Callable[[str], int | float]
) -> Callable[[str], int | float]:
    """An argparse type: ``convert`` the text and refuse infinity, NaN and values below
    ``minimum``."""

    def parse(text: str) -> int | float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and value >= minimum):
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="superpixel-annotator",
        description="Annotate a 3D scan by superpixels in the browser.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="NIfTI (.nii, .nii.gz) or MGH (.mgh, .mgz) scans of one case; several files are "
        "co-registered modalities on one voxel grid, the first shown first "
        "(default: the bundled phantom)",
    )
    parser.add_argument(
        "--volume",
        type=_number_at_least(0, int),
        default=0,
        metavar="N",
        help="which volume of 4D files to show, counting from 0 (default 0)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=_number_at_least(1, float),
        default=DEFAULT_LIMITS.max_bytes / 1e6,
        metavar="M",
        help="largest file accepted, here or uploaded, in MB (default %(default)g)",
    )
    parser.add_argument(
        "--max-voxels",
        type=_number_at_least(1, int),
        default=DEFAULT_LIMITS.max_voxels,
        metavar="V",
        help="largest number of voxels of a volume (default %(default)d)",
    )
    parser.add_argument(
        "--celery-broker",
        default=os.environ.get(BROKER_VARIABLE) or None,
        metavar="URL",
        help="compute superpixels of uploaded scans on Celery workers through this broker, "
        f"e.g. redis://localhost:6379/0 (default: ${BROKER_VARIABLE}, else in a local process)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port to bind (default 8050)")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode with hot reload")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the annotator server; returns the process exit code."""
    args = build_parser().parse_args(argv)
    limits = Limits(max_bytes=round(args.max_upload_mb * 1e6), max_voxels=args.max_voxels)
    manager = celery_manager(args.celery_broker) if args.celery_broker else None
    try:
        volumes = load_startup_scan(args.files, volume_index=args.volume, limits=limits)
        shown = ", ".join(f"{volume.name} {volume.data.shape}" for volume in volumes)
        print(f"Preparing {shown} ...", flush=True)
        app = create_app(volumes, limits=limits, background_manager=manager)
    except (VolumeError, CacheSettingError) as error:
        print(f"superpixel-annotator: {error}", file=sys.stderr)
        return 2
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"Open http://{shown_host}:{args.port}/ in a browser (Ctrl+C stops).", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug, dev_tools_props_check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
