"""The Dash layer: :class:`~.annotator.VolumeAnnotator`, its layout, callbacks and browser code.

Dash serves the browser code in ``js/`` from this package, as it serves a component
library's (see :mod:`.scripts`), so an app that embeds the annotator needs no ``assets``
folder of this project.
"""

from .. import __version__ as __version__

_js_dist = [
    {"relative_package_path": f"js/{name}.js", "namespace": __name__}
    for name in ("annotator", "strokes", "dataset")
]
