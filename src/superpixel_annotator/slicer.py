"""dash-slicer's ``VolumeSlicer`` serving each session's own scan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dash
import numpy as np
from dash import Input, Output, State
from dash_slicer import VolumeSlicer
from dash_slicer.utils import get_thumbnail_size, img_array_to_uri, shape3d_to_size2d

from .cases import Case, CaseNotFoundError
from .overlays import section

if TYPE_CHECKING:
    from .annotator import VolumeAnnotator

THUMBNAIL_SIZE = 32


def windowed(image: np.ndarray, clim) -> np.ndarray:
    """An image as uint8 through the intensity window ``clim``."""
    low, high = min(clim), max(clim)
    scaled = (image.astype(np.float32) - low) * (255 / max(high - low, 1e-12))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def axis_ranges(shape: Sequence[int], spacing: Sequence[float], axis: int) -> dict:
    """A view's x and y axis ranges in mm, showing the whole slice with row 0 on top."""
    rows_axis, cols_axis = (a for a in range(3) if a != axis)
    height, width = shape[rows_axis], shape[cols_axis]
    dy, dx = spacing[rows_axis], spacing[cols_axis]
    return {"x": [-0.5 * dx, (width - 0.5) * dx], "y": [(height - 0.5) * dy, -0.5 * dy]}


class SessionSlicer(VolumeSlicer):
    """dash-slicer's ``VolumeSlicer``, slicing the case and modality the session shows.

    dash-slicer binds a slicer to one array; its two server callbacks are registered here
    with the session's case and modality as state instead, so the registered slicer serves
    every user's scan, and thumbnails are cached per case, modality and window.
    """

    def __init__(self, app: dash.Dash, annotator: VolumeAnnotator, axis: int) -> None:
        self._annotator = annotator
        case = annotator.initial_case
        super().__init__(
            app,
            case.volume.data,
            spacing=case.volume.spacing,
            axis=axis,
            scene_id=annotator.id,
            clim=case.windows[0],
            thumbnail=THUMBNAIL_SIZE,
        )
        ranges = axis_ranges(case.shape, case.volume.spacing, axis)
        # dash-slicer reads layout.*axis.range from the figure prop, which Dash 4 leaves
        # undefined under autorange: state the ranges (see also clientside.PUBLISH_STATE).
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
        case = State(self._annotator._part("case"), "data")
        modality = State(self._annotator._part("modality"), "value")
        self._app.callback(
            Output(self._thumbs_data.id, "data"), Input(self._clim.id, "data"), case, modality
        )(self.thumbnails)
        self._app.callback(
            Output(self._server_data.id, "data"),
            Input(self._state.id, "data"),
            Input(self._clim.id, "data"),
            case,
            modality,
        )(self.requested_slice)

    def _array(self, case_data, modality) -> tuple[Case, int]:
        try:
            case = self._annotator.case_of(case_data)
        except CaseNotFoundError:
            raise dash.exceptions.PreventUpdate from None
        return case, self._annotator._modality(case, modality)

    def thumbnails(self, clim, case_data, modality) -> list[str]:
        """Every slice of the view as a small PNG, through the window ``clim``."""
        case, modality = self._array(case_data, modality)
        if not is_window(clim):
            raise dash.exceptions.PreventUpdate
        return self._annotator._thumbnails(case.key, modality, self._axis, tuple(clim))

    def requested_slice(self, state, clim, case_data, modality) -> dict:
        """The full-resolution slice the view moved to."""
        if not isinstance(state, dict) or not state.get("index_changed") or not is_window(clim):
            raise dash.exceptions.PreventUpdate
        case, modality = self._array(case_data, modality)
        index = state.get("index")
        if not case.has_slice(self._axis, index):
            raise dash.exceptions.PreventUpdate
        image = section(case.volumes[modality].data, self._axis, index)
        return {"index": index, "slice": img_array_to_uri(windowed(image, clim))}


def is_window(clim) -> bool:
    return (
        isinstance(clim, (list, tuple))
        and len(clim) == 2
        and all(isinstance(v, (int, float)) for v in clim)
    )
