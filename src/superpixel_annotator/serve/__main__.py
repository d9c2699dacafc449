"""``python -m superpixel_annotator.serve``: see :mod:`.launcher`."""

from .launcher import main

main()
