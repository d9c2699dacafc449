"""Requests for an annotator's edit callback, built from what the Dash app says about itself.

Dash serves its callbacks at ``/_dash-dependencies`` and its components' initial props at
``/_dash-layout``. A callback request names every input and state with its value, as the
browser sends it; here each value is the layout's unless the caller gives another, so the
requests follow the app when its callbacks gain or lose inputs. Used by
``tests/test_dash_endpoint.py`` and ``benchmarks/bench_load.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UPDATE_PATH = "/_dash-update-component"
LAYOUT_PATH = "/_dash-layout"
DEPENDENCIES_PATH = "/_dash-dependencies"

Prop = tuple[str, str]  # (component id, property)
NO_STATE = object()  # what :meth:`EditCallback.new_state` returns for a reply without a state


def layout_props(layout: Any) -> dict[str, dict]:
    """The props of every component that has a string id, by id, from ``/_dash-layout``."""
    found: dict[str, dict] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            props = node.get("props") if "namespace" in node else None
            if isinstance(props, dict) and isinstance(props.get("id"), str):
                found[props["id"]] = props
            for value in node.values():
                walk(value)

    walk(layout)
    return found


def output_list(output: str) -> list[dict]:
    """The ``outputs`` of a request, from a dependency's ``output`` (``..a.x...b.y..``)."""
    names = output[2:-2].split("...") if output.startswith("..") else [output]
    # Callbacks without outputs (clientside side effects) name a dummy without a property.
    return [
        dict(zip(("id", "property"), name.rsplit(".", 1), strict=True))
        for name in names
        if "." in name
    ]


@dataclass(frozen=True)
class EditCallback:
    """An annotator's edit callback (strokes, undo, redo), as the browser calls it.

    Parameters
    ----------
    dependency : dict
        The callback's entry in ``/_dash-dependencies``.
    annotator : str
        The annotator's id (the prefix of its component ids).
    props : dict
        :func:`layout_props` of the app's layout: the value of every other input and state.
    """

    dependency: dict
    annotator: str
    props: dict[str, dict]

    @classmethod
    def find(cls, layout: Any, dependencies: list[dict]) -> EditCallback:
        """The first callback that outputs ``<id>-annotation.data`` and takes the views'
        ``<id>-stroke-<axis>`` stores (where strokes arrive) as inputs.

        Raises
        ------
        LookupError
            If the app has no such callback.
        """
        for dependency in dependencies:
            states = [
                o["id"][: -len("-annotation")]
                for o in output_list(dependency["output"])
                if o["id"].endswith("-annotation") and o["property"].split("@")[0] == "data"
            ]
            takes_strokes = states and any(
                i["id"] == f"{states[0]}-stroke-0" for i in dependency["inputs"]
            )
            if takes_strokes:
                return cls(dependency, states[0], layout_props(layout))
        raise LookupError("no callback outputs <id>-annotation.data from stroke stores")

    @property
    def state(self) -> Prop:
        """Where the annotation state lives."""
        return (f"{self.annotator}-annotation", "data")

    def stroke_store(self, axis: int) -> Prop:
        """Where a view's strokes arrive."""
        return (f"{self.annotator}-stroke-{axis}", "data")

    def slider(self, axis: int) -> str:
        """The id of a view's slice slider (named in the view's stroke configuration)."""
        return self.props[f"{self.annotator}-stroke-config-{axis}"]["data"]["slider"]

    def label_values(self) -> list[int]:
        """The values of the label picker's options (0 is the eraser)."""
        return [option["value"] for option in self.props[f"{self.annotator}-label"]["options"]]

    def body(self, changed: Prop, values: dict[Prop, Any]) -> dict:
        """The JSON body of a request after ``changed`` changed.

        Every input and state takes its value from ``values``, else from the layout, and
        has none (as for an undefined prop in the browser) when neither has it.
        """

        def entries(kind: str) -> list[dict]:
            listed = []
            for item in self.dependency[kind]:
                key = (item["id"], item["property"])
                entry = {"id": item["id"], "property": item["property"]}
                layout = self.props.get(item["id"], {})
                if key in values:
                    entry["value"] = values[key]
                elif item["property"] in layout:
                    entry["value"] = layout[item["property"]]
                listed.append(entry)
            return listed

        return {
            "output": self.dependency["output"],
            "outputs": output_list(self.dependency["output"]),
            "inputs": entries("inputs"),
            "state": entries("state"),
            "changedPropIds": [".".join(changed)],
        }

    def stroke(self, state: Any, axis: int, index: Any, path: Any, label: Any) -> dict:
        """The body of a stroke drawn along ``path`` on slice ``index`` of a view."""
        stroke = self.stroke_store(axis)
        values = {
            stroke: {"path": path, "index": index},
            (self.slider(axis), "value"): index,
            (f"{self.annotator}-label", "value"): label,
            self.state: state,
        }
        return self.body(stroke, values)

    def button(self, name: str, state: Any, clicks: int) -> dict:
        """The body of a click on a button (``"undo"``, ``"redo"``, ``"fill"``)."""
        clicked = (f"{self.annotator}-{name}", "n_clicks")
        return self.body(clicked, {clicked: clicks, self.state: state})

    def new_state(self, reply: dict) -> Any:
        """The annotation state a reply sends back, or :data:`NO_STATE` when it sends none."""
        identifier, prop = self.state
        return reply.get("response", {}).get(identifier, {}).get(prop, NO_STATE)
