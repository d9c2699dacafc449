"""A multi-page host portal: one page per scan, each with its own annotator (Dash pages).

Each page is registered with ``dash.register_page`` and holds a ``VolumeAnnotator`` with its
own id; a nav bar switches pages without reloading. Dash unmounts the page you leave; its
annotation is kept in the browser's local storage and comes back with the page. Run
``python examples/multi_page.py [FILE ...] [--port 8050]``; without files, the bundled
phantom and its lesion map, at ``/scan-1`` and ``/scan-2``.
"""

import argparse
import sys

import dash
import dash_bootstrap_components as dbc
from dash import html

from superpixel_annotator import VolumeAnnotator, load_volume
from superpixel_annotator.core.image_files import VolumeError
from superpixel_annotator.web.app import resource_dir, sample_path, use_local_bootstrap

LESION_MAP = resource_dir("sample_data") / "head_phantom_lesion.nii.gz"


def build_portal(paths: list[str]) -> dash.Dash:
    """The portal: a nav bar and one page per scan, at ``/scan-1``, ``/scan-2``, ...; the
    home page ``/`` shows only the nav bar.

    Raises
    ------
    VolumeError
        When a file is not a usable 3D image.
    """
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder="",
        title="Scans",
        update_title=None,
        compress=True,
        # The annotators' components exist only while their page is shown.
        suppress_callback_exceptions=True,
    )
    use_local_bootstrap(app)
    for number, path in enumerate(paths, start=1):
        volume = load_volume(path)
        annotator = VolumeAnnotator(app, volume, id=f"scan-{number}")
        dash.register_page(
            f"scan-{number}",
            path=f"/scan-{number}",
            name=f"{number}: {volume.name}",
            layout=annotator.layout,
        )
    dash.register_page("home", path="/", name="Scans", layout=html.P("Pick a scan above."))
    nav = dbc.Nav(
        [
            dbc.NavLink(page["name"], href=page["relative_path"], active="exact")
            for page in dash.page_registry.values()
            if page["module"] != "home"
        ],
        pills=True,
        className="my-2",
    )
    app.layout = dbc.Container([nav, dash.page_container], fluid=True)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=[str(sample_path()), str(LESION_MAP)])
    parser.add_argument("--port", type=int, default=8050)
    arguments = parser.parse_args()
    try:
        portal = build_portal(arguments.files)
    except VolumeError as error:
        sys.exit(f"multi_page.py: {error}")
    portal.run(port=arguments.port)
