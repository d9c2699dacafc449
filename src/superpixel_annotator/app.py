"""The standalone app: one :class:`VolumeAnnotator` in a page, with local Bootstrap styling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dash
import dash_bootstrap_components as dbc
import flask
import flask_bootstrap
from dash import html

from .annotator import VolumeAnnotator
from .volume import Volume, load_volume

SAMPLE_FILE = "head_phantom.nii.gz"
BOOTSTRAP_ROUTE = "/_superpixel_annotator/bootstrap.min.css"
_BOOTSTRAP_CSS = Path(flask_bootstrap.__file__).parent / "static/bootstrap5/css/bootstrap.min.css"


def resource_dir(name: str) -> Path:
    """A top-level resource folder (``assets``, ``sample_data``) of an installed wheel or
    of a source checkout."""
    packaged = Path(__file__).parent / name
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / name


def sample_path() -> Path:
    """The bundled head phantom that the app opens when no file is given."""
    return resource_dir("sample_data") / SAMPLE_FILE


def use_local_bootstrap(app: dash.Dash) -> None:
    """Serve Bootstrap 5's stylesheet from this server and link it, so pages work offline."""
    app.server.add_url_rule(
        BOOTSTRAP_ROUTE,
        "superpixel_annotator_bootstrap",
        lambda: flask.send_file(_BOOTSTRAP_CSS, mimetype="text/css", max_age=86400),
    )
    app.config.external_stylesheets.append(BOOTSTRAP_ROUTE)


def create_app(volume: Volume | str | os.PathLike | None = None, **options: Any) -> dash.Dash:
    """Build the standalone annotator app.

    Parameters
    ----------
    volume : Volume, path or None
        The scan to open; ``None`` opens the bundled sample.
    **options
        Passed to :class:`VolumeAnnotator` (``labels``, ``cache_dir``, ``superpixels``).

    Returns
    -------
    dash.Dash
    """
    if not isinstance(volume, Volume):
        volume = load_volume(sample_path() if volume is None else volume)
    app = dash.Dash(
        __name__,
        title="Superpixel annotator",
        update_title=None,
        compress=True,
        assets_folder=str(resource_dir("assets")),
    )
    use_local_bootstrap(app)
    annotator = VolumeAnnotator(app, volume, id="annotator", **options)
    app.layout = dbc.Container(
        [
            html.Div(
                [
                    html.H5("Superpixel annotator", className="mb-0 me-3"),
                    html.Span(volume.name, className="text-muted small", id="volume-name"),
                ],
                className="d-flex align-items-baseline my-2",
            ),
            annotator.layout,
        ],
        fluid=True,
    )
    # Dash sets up its script bundles on the first request and refuses concurrent ones
    # meanwhile (plotly/dash#3971); a threaded server's first page load would hit that.
    app.server.test_client().get("/")
    return app
