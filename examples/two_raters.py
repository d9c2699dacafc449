"""A host portal with two annotators side by side: two raters label the same scan.

Each ``VolumeAnnotator`` has its own id, so its components, callbacks and annotation are
independent of the other's. Run ``python examples/two_raters.py [FILE] [--port 8050]``.
"""

import argparse

import dash
import dash_bootstrap_components as dbc
from dash import html

from superpixel_annotator import VolumeAnnotator, load_volume
from superpixel_annotator.web.app import sample_path, use_local_bootstrap


def build_portal(path: str) -> dash.Dash:
    """The portal: a title bar and one annotator per rater."""
    app = dash.Dash(__name__, title="Two raters", update_title=None, compress=True)
    use_local_bootstrap(app)
    volume = load_volume(path)
    raters = {rater: VolumeAnnotator(app, volume, id=rater) for rater in ("rater-a", "rater-b")}
    app.layout = dbc.Container(
        [
            html.H4(f"Two raters: {volume.name}", className="my-2"),
            dbc.Row(
                [
                    dbc.Col([html.H6(rater), annotator.layout], lg=6)
                    for rater, annotator in raters.items()
                ]
            ),
        ],
        fluid=True,
    )
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=str(sample_path()))
    parser.add_argument("--port", type=int, default=8050)
    arguments = parser.parse_args()
    build_portal(arguments.file).run(port=arguments.port)
