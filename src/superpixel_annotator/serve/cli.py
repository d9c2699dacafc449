"""The ``superpixel-annotator`` command: the annotator on Dash's development server."""

from __future__ import annotations

import argparse
import sys

from .settings import add_scan_arguments, settings_from_arguments
from .startup import STARTUP_ERRORS, background_manager, start


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="superpixel-annotator",
        description="Annotate a 3D scan by superpixels in the browser.",
    )
    add_scan_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port to bind (default 8050)")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode with hot reload")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the annotator server; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_arguments(args)
        app = start(settings, background_manager(settings))
    except STARTUP_ERRORS as error:
        print(f"superpixel-annotator: {error}", file=sys.stderr)
        return 2
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"Open http://{shown_host}:{args.port}/ in a browser (Ctrl+C stops).", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug, dev_tools_props_check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
