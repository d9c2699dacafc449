"""Ship ``js/*.js`` with the package: Dash serves them to every app that embeds an annotator.

Dash adds the scripts of every module in its component registry to each page, and serves
them from the package (``/_dash-component-suites/<module>/<file>``); this package registers
itself the way component libraries such as dash-bootstrap-components do, through its
``_js_dist`` (see :mod:`superpixel_annotator.web`).
"""

from __future__ import annotations

from dash import ClientsideFunction
from dash.development.base_component import ComponentRegistry

NAMESPACE = "superpixel_annotator"
"""The ``window.dash_clientside`` namespace that the scripts define their functions in."""


def register_scripts() -> None:
    """Add this package's scripts to every Dash page (idempotent)."""
    ComponentRegistry.registry.add(__package__)


def browser_function(name: str) -> ClientsideFunction:
    """The browser-side callback ``name`` defined in ``js/*.js``."""
    return ClientsideFunction(NAMESPACE, name)
