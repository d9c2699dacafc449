"""Studies and series of a PACS, through DICOMweb (:mod:`.dicomweb`): search, retrieve a
series into a folder that :func:`~superpixel_annotator.core.dicom.load_dicom_series` reads,
store a DICOM file back; :mod:`.series_cache` keeps each series retrieved once in the
cache folder. It imports no web library: the web layer and the label store call it.
"""

from .dicomweb import DicomWebSource, PacsError, Series, Study

__all__ = ["DicomWebSource", "PacsError", "Series", "Study"]
