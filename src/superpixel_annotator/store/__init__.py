"""The server side of a dataset's annotation: the label store (:mod:`.labels`), which keeps
every saved version of each case's labels, who saved it and when, and who is editing it, in
a database (:mod:`.database`) and the labels folder (:mod:`.files`, :mod:`.repair`); what it
returns (:mod:`.records`); and the dataset workspace (:mod:`.workspace`). It imports no web
library: the web layer calls it.
"""

from .database import StoreError
from .labels import LabelStore
from .records import CaseLocked, CaseSummary, Lock, Version, VersionConflict

__all__ = [
    "CaseLocked",
    "CaseSummary",
    "LabelStore",
    "Lock",
    "StoreError",
    "Version",
    "VersionConflict",
]
