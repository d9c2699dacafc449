"""The standalone app: one :class:`VolumeAnnotator` in a page, with local Bootstrap styling."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dash
import dash_bootstrap_components as dbc
import flask
import flask_bootstrap
from dash import html

from ..core.datasets import is_dataset_folder
from ..core.dicom import is_dicom_folder, load_dicom_series
from ..core.image_files import Limits
from ..core.palette import DEFAULT_LABELS, LabelClass
from ..core.volume import Volume, load_modalities, load_volume
from ..store.workspace import DatasetWorkspace, open_workspace
from .annotator import VolumeAnnotator
from .auth import require_login
from .security import DEFAULT_FRAME_ANCESTORS, add_security_headers

SAMPLE_FILE = "head_phantom.nii.gz"
_POLYFILL_SCRIPT = re.compile(r'\s*<script src="[^"]*/polyfill@[^"]*"></script>')
BOOTSTRAP_ROUTE = "/_superpixel_annotator/bootstrap.min.css"
_BOOTSTRAP_CSS = Path(flask_bootstrap.__file__).parent / "static/bootstrap5/css/bootstrap.min.css"


def resource_dir(name: str) -> Path:
    """A top-level resource folder (``assets``, ``sample_data``) of an installed wheel or
    of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / name
    return packaged if packaged.is_dir() else package.parents[1] / name


def sample_path() -> Path:
    """The bundled head phantom that the app opens when no file is given."""
    return resource_dir("sample_data") / SAMPLE_FILE


def load_startup_scan(paths: Sequence[str | os.PathLike], **options: Any) -> list[Volume]:
    """The modalities a server starts with: those at ``paths``, or the sample when none.

    Each volume's notes (a volume chosen from a 4D file, replaced NaN values) are printed to
    stderr as ``superpixel-annotator: note: ...``; ``options`` go to :func:`load_modalities`.

    Raises
    ------
    VolumeError
        When a file is not a usable 3D image or the modalities disagree.
    """
    volumes = load_modalities(list(paths) or [sample_path()], **options)
    print_notes(note for volume in volumes for note in volume.notes)
    return volumes


def print_notes(notes: Iterable[str]) -> None:
    """Print start-up notes to stderr as ``superpixel-annotator: note: ...``."""
    for note in notes:
        print(f"superpixel-annotator: note: {note}", file=sys.stderr)


def open_folder(
    folder: str | os.PathLike,
    *,
    labels: Sequence[LabelClass],
    limits: Limits,
    series_uid: str | None = None,
    **workspace_options: Any,
) -> tuple[list[Volume], DatasetWorkspace | None]:
    """What a folder given to a server holds: one DICOM series, or else a dataset, whose
    notes are printed to stderr (see :func:`print_notes`).

    Parameters
    ----------
    folder : str or path-like
        A folder of DICOM files, or of cases.
    labels, limits
        The label table, and the largest image read.
    series_uid : str, optional
        The series to read from a DICOM folder holding several.
    **workspace_options
        Passed to :func:`open_workspace` (``labels_dir``, ``database``, ``modalities``).

    Returns
    -------
    volumes : list of Volume
        The series, or the modalities of the dataset case a server starts with.
    workspace : DatasetWorkspace or None
        The dataset; ``None`` for a DICOM series.

    Raises
    ------
    VolumeError, DatasetError, StoreError
        When the series, the dataset or its database cannot be used.
    """
    if is_dicom_folder(folder):
        return [load_dicom_series(folder, series_uid=series_uid, limits=limits)], None
    workspace, notes = open_workspace(folder, labels=labels, limits=limits, **workspace_options)
    print_notes(notes)
    return workspace.start_volumes(), workspace


def use_local_bootstrap(app: dash.Dash) -> None:
    """Serve Bootstrap 5's stylesheet from this server and link it, so pages work offline."""
    app.server.add_url_rule(
        BOOTSTRAP_ROUTE,
        "superpixel_annotator_bootstrap",
        lambda: flask.send_file(_BOOTSTRAP_CSS, mimetype="text/css", max_age=86400),
    )
    app.config.external_stylesheets.append(BOOTSTRAP_ROUTE)


def celery_manager(broker_url: str) -> dash.CeleryManager:
    """A background callback manager that runs jobs on Celery workers through ``broker_url``
    (e.g. ``redis://host:6379/0``, used as result backend too)."""
    from celery import Celery

    celery_app = Celery("superpixel_annotator", broker=broker_url, backend=broker_url)
    return dash.CeleryManager(celery_app)


def serve_without_polyfill(app: dash.Dash) -> None:
    """Leave Dash's Babel polyfill (core-js 2 and regenerator-runtime) out of ``app``'s page.

    Every browser the annotator supports has the features it adds, and it replaces some
    native functions by slower ones; leaving it out saves a page load about 0.25 s of the
    browser's main thread (``docs/performance.md``). Dash's lazily loaded components (the
    graphs, sliders, uploads) need the global ``regeneratorRuntime`` it defines: the bundle
    of dash-bootstrap-components, which the page always loads, defines it too.
    """
    interpolate_index = app.interpolate_index

    def without_polyfill(**parts: str) -> str:
        return interpolate_index(**{**parts, "scripts": _POLYFILL_SCRIPT.sub("", parts["scripts"])})

    app.interpolate_index = without_polyfill


def create_app(
    volumes: Volume | Sequence[Volume] | str | os.PathLike | None = None,
    *,
    frame_ancestors: str = DEFAULT_FRAME_ANCESTORS,
    users: Mapping[str, str] | None = None,
    **options: Any,
) -> dash.Dash:
    """Build the standalone annotator app.

    Parameters
    ----------
    volumes : Volume, sequence of Volume, path or None
        The scan to open (several volumes: co-registered modalities; a file, or a folder of
        one DICOM series), or a dataset folder
        (its labels saved in its ``labels`` folder, see :func:`open_workspace` for more
        choices); ``None`` opens the bundled sample.
    frame_ancestors : str
        Who may show the app in a frame (see :func:`add_security_headers`).
    users : mapping of str to str, optional
        Users who may log in, with their password hashes (see :func:`read_users`); default:
        no login.
    **options
        Passed to :class:`VolumeAnnotator` (``labels``, ``cache_dir``, ``superpixels``,
        ``limits``, ``server_limits``, ``workspace``, ``background_manager``, e.g.
        :func:`celery_manager`).

    Returns
    -------
    dash.Dash
    """
    if isinstance(volumes, (str, os.PathLike)) and is_dataset_folder(volumes):
        volumes, workspace = open_folder(
            volumes,
            labels=options.get("labels", DEFAULT_LABELS),
            limits=options.get("limits") or Limits(),
        )
        if workspace is not None:
            options["workspace"] = workspace
    elif volumes is None or isinstance(volumes, (str, os.PathLike)):
        volumes = load_volume(sample_path() if volumes is None else volumes)
    app = dash.Dash(
        __name__,
        title="Superpixel annotator",
        update_title=None,
        compress=True,
        assets_folder=str(resource_dir("assets")),
    )
    use_local_bootstrap(app)
    serve_without_polyfill(app)
    annotator = VolumeAnnotator(app, volumes, id="annotator", **options)
    app.layout = dbc.Container(
        [html.H5("Superpixel annotator", className="my-2"), annotator.layout], fluid=True
    )
    add_security_headers(app, frame_ancestors)
    if users is not None:
        require_login(app, users)
    # Dash sets up its script bundles on the first request and refuses concurrent ones
    # meanwhile (plotly/dash#3971); a threaded server's first page load would hit that.
    app.server.test_client().get("/")
    return app
