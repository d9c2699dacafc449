"""dash-slicer's ``VolumeSlicer`` serving each session's own scan."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import dash
import numpy as np
from dash import Input, Output, State
from dash_slicer import VolumeSlicer
from dash_slicer.utils import get_thumbnail_size, shape3d_to_size2d

from ..core.cases import Case
from ..core.geometry import axis_ranges, other_axes, section
from ..core.overlays import png_uri, thumbnail_box, windowed
from .scripts import browser_function

THUMBNAIL_SIZE = 32
CaseResolver = Callable[[object, object], tuple[Case, int]]
"""Turns a session's case store and modality value into its case and a valid modality
index; raises ``PreventUpdate`` when the case is gone."""


class SessionSlicer(VolumeSlicer):
    """dash-slicer's ``VolumeSlicer``, slicing the case and modality the session shows.

    dash-slicer binds a slicer to one array; its two server callbacks are registered here
    with the session's case and modality as state instead, so the registered slicer serves
    every user's scan, and thumbnails are cached per case, modality and window.

    dash-slicer asks for the thumbnails (every slice, small, shown while the slider is
    dragged) when a page starts; here they are sent for a new window (another window or
    scan) and when the view asks for them (``thumbnail_request``): once its first
    full-resolution slice has arrived and the browser is idle (``requestThumbnails`` in
    ``js/annotator.js``). A view is shown without them, and taking them in first cost a
    page load about 0.14 s.

    dash-slicer's browser callback that composes the view's figure is replaced by
    ``composeFigure`` (``js/annotator.js``), which leaves alone a figure that already has
    its traces: after an edit, dash-slicer's drew each changed view a second time.

    Parameters
    ----------
    app : dash.Dash
        The app to register the callbacks with.
    case : Case
        The case the page starts on.
    axis : int
        The view's axis (0 axial, 1 coronal, 2 sagittal).
    scene_id : str
        The annotator's id (dash-slicer's scene, linking the three views).
    session : tuple of str
        The ids of the session's ``case`` store and ``modality`` choice.
    resolve : CaseResolver
        See :data:`CaseResolver`.
    thumbnail_request : str
        The id of the view's store whose update asks for the thumbnails.
    """

    def __init__(
        self,
        app: dash.Dash,
        case: Case,
        axis: int,
        scene_id: str,
        session: tuple[str, str],
        resolve: CaseResolver,
        thumbnail_request: str,
    ) -> None:
        self._session_ids = session
        self._thumbnail_request = thumbnail_request
        self._resolve = resolve
        self._thumbnails = lru_cache(maxsize=8)(self._render_thumbnails)
        super().__init__(
            app,
            case.volume.data,
            spacing=case.volume.spacing,
            axis=axis,
            scene_id=scene_id,
            clim=case.windows[0],
            thumbnail=THUMBNAIL_SIZE,
        )
        self._replace_figure_composition()
        ranges = axis_ranges(case.shape, case.volume.spacing, axis)
        # dash-slicer reads layout.*axis.range from the figure prop, which Dash 4 leaves
        # undefined under autorange: state the ranges (see also publishState in annotator.js).
        self.graph.figure.update_xaxes(range=ranges["x"])
        self.graph.figure.update_yaxes(range=ranges["y"])
        self.graph.figure.update_layout(
            dragmode="drawopenpath",
            uirevision=case.key,
            plot_bgcolor="black",
        )
        self.graph.config.update(
            modeBarButtonsToAdd=["drawopenpath"],
            modeBarButtonsToRemove=["toImage", "lasso2d", "select2d"],
            displaylogo=False,
        )
        self.graph.style = {"height": "42vh"}

    def _replace_figure_composition(self) -> None:
        """Have ``composeFigure`` compose the view's figure instead of dash-slicer's
        callback, which redrew a view with the figure it had."""
        figure = f"{self.graph.id}.figure"
        composition = next(c for c in self._app._callback_list if c["output"] == figure)
        function = browser_function("composeFigure")
        composition["clientside_function"] = {
            "namespace": function.namespace,
            "function_name": function.function_name,
        }

    @property
    def info(self):
        """The store of dash-slicer's view info (see :meth:`info_for`)."""
        return self._info

    @property
    def timer(self):
        """dash-slicer's timer, from which it publishes the view's position (its state)."""
        return self._timer

    @property
    def rate_limit_state(self) -> str:
        """The name of the browser global where dash-slicer keeps the view's rate limiting:
        when its timer next publishes the position (``timeout``) and the slice it last
        published (``last_index``)."""
        return f"_slicer_{self._context_id}"

    @property
    def slice_data(self) -> tuple:
        """dash-slicer's stores of the view's full-resolution slice and of its thumbnails."""
        return self._server_data, self._thumbs_data

    @property
    def figure_parts(self) -> tuple:
        """The stores dash-slicer composes the view's figure from besides the extra traces:
        the slice's image traces and the other views' position indicators."""
        return self._img_traces, self._indicator_traces

    def info_for(self, case: Case) -> dict:
        """dash-slicer's view info for ``case`` (a new ``infoid`` makes it reload the slice)."""
        size = shape3d_to_size2d(case.shape, self._axis)
        return {
            **self._slice_info,
            "size": size,
            "offset": (0.0, 0.0, 0.0),
            "stepsize": shape3d_to_size2d(case.volume.spacing, self._axis),
            "thumbnail_size": get_thumbnail_size(size[:2], THUMBNAIL_SIZE),
            "infoid": int(np.random.default_rng().integers(1, 9999999)),
        }

    def _create_server_callbacks(self) -> None:
        case, modality = self._session_ids
        session = (State(case, "data"), State(modality, "value"))
        self._app.callback(
            Output(self._thumbs_data.id, "data"),
            Input(self._clim.id, "data"),
            Input(self._thumbnail_request, "data"),
            *session,
            prevent_initial_call=True,
        )(lambda clim, _, case_data, modality: self.thumbnails(clim, case_data, modality))
        self._app.callback(
            Output(self._server_data.id, "data"),
            Input(self._state.id, "data"),
            Input(self._clim.id, "data"),
            *session,
            prevent_initial_call=True,
        )(self.requested_slice)

    def thumbnails(self, clim, case_data, modality) -> list[str]:
        """Every slice of the view as a small PNG, through the window ``clim``."""
        case, modality = self._resolve(case_data, modality)
        if not is_window(clim):
            raise dash.exceptions.PreventUpdate
        return self._thumbnails(case, modality, tuple(clim))

    def _render_thumbnails(self, case: Case, modality: int, clim: tuple[float, float]) -> list:
        data = case.volumes[modality].data
        rows_axis, cols_axis = other_axes(self._axis)
        box = thumbnail_box(data.shape[cols_axis], data.shape[rows_axis], THUMBNAIL_SIZE)
        # Every few voxels of a large slice are plenty for a thumbnail, and much faster to
        # read across the array's memory order.
        step = max(1, min(data.shape[rows_axis], data.shape[cols_axis]) // (4 * THUMBNAIL_SIZE))
        return [
            png_uri(windowed(section(data, self._axis, index)[::step, ::step], clim), box=box)
            for index in range(data.shape[self._axis])
        ]

    def requested_slice(self, state, clim, case_data, modality) -> dict:
        """The full-resolution slice the view moved to."""
        if not isinstance(state, dict) or not state.get("index_changed") or not is_window(clim):
            raise dash.exceptions.PreventUpdate
        case, modality = self._resolve(case_data, modality)
        index = state.get("index")
        if not case.has_slice(self._axis, index):
            raise dash.exceptions.PreventUpdate
        image = section(case.volumes[modality].data, self._axis, index)
        return {"index": index, "slice": png_uri(windowed(image, clim))}


def is_window(clim) -> bool:
    """Whether ``clim`` (a JSON value from the browser) is an intensity window."""
    return (
        isinstance(clim, (list, tuple))
        and len(clim) == 2
        and all(isinstance(v, (int, float)) for v in clim)
    )
