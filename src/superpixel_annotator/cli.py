"""The ``superpixel-annotator`` command."""

from __future__ import annotations

import argparse
import sys

from .app import create_app, sample_path
from .volume import VolumeError, load_volume


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="superpixel-annotator",
        description="Annotate a 3D scan by superpixels in the browser.",
    )
    parser.add_argument(
        "file", nargs="?", help="a NIfTI volume (.nii, .nii.gz); default: the bundled phantom"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port to bind (default 8050)")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode with hot reload")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the annotator server; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        volume = load_volume(args.file or sample_path())
    except VolumeError as error:
        print(f"superpixel-annotator: {error}", file=sys.stderr)
        return 2
    print(f"Preparing {volume.name} {volume.data.shape} ...", flush=True)
    app = create_app(volume)
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"Open http://{shown_host}:{args.port}/ in a browser (Ctrl+C stops).", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug, dev_tools_props_check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
