"""What one request may ask of the server: files and bytes per upload, the request body,
and superpixel jobs at once.

Each file's own size and voxel count are bounded by :class:`~..core.image_files.Limits`;
these bound an upload as a whole, and are checked on the base64 lengths before any file is
decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.dicom import MAX_DICOM_FILES
from ..core.dicom_upload import is_dicom_upload
from ..core.image_files import Limits, VolumeError, file_size

# Room in a request besides the files: the annotation state (a few bytes per superpixel and
# a bounded history, sent up to three times with an upload) and the JSON around it all.
REQUEST_SLACK_BYTES = 128 * 2**20
# A data URL's header and a file name, generously.
PER_FILE_OVERHEAD = 4096


@dataclass(frozen=True)
class ServerLimits:
    """The bounds of uploads and jobs, over those of each file (:class:`Limits`).

    Attributes
    ----------
    max_files : int
        Most files in one upload: the modalities of one case (default 8). An upload of a
        DICOM series may hold :data:`~..core.dicom.MAX_DICOM_FILES` files.
    max_total_bytes : int or None
        Most bytes of all files of one upload together; ``None`` (default): twice the
        largest file (see :meth:`total_bytes`).
    max_jobs : int
        Most superpixel jobs (uploads, size changes) computed at once per server (default
        2); more wait in a queue (see :mod:`.jobs`).
    queue_seconds : float
        How long a job waits for its turn before it is refused (default 60).
    """

    max_files: int = 8
    max_total_bytes: int | None = None
    max_jobs: int = 2
    queue_seconds: float = 60.0

    def __post_init__(self) -> None:
        total = self.max_total_bytes
        if self.max_files < 1 or self.max_jobs < 1 or (total is not None and total < 1):
            raise ValueError(f"limits must be positive, got {self}")
        if not self.queue_seconds >= 0:
            raise ValueError(f"the queue wait must be at least 0, got {self.queue_seconds}")

    def total_bytes(self, limits: Limits) -> int:
        """The most bytes of one upload with files bounded by ``limits``."""
        return self.max_total_bytes or 2 * limits.max_bytes

    def request_bytes(self, limits: Limits) -> int:
        """The largest request body a browser needs to send: the largest upload in base64
        (4 bytes for 3) with its headers, plus the annotation state and the JSON."""
        encoded = -(-self.total_bytes(limits) // 3) * 4
        files = max(self.max_files, MAX_DICOM_FILES)
        return encoded + files * PER_FILE_OVERHEAD + REQUEST_SLACK_BYTES

    def check_upload(self, contents: list, filenames: list, limits: Limits) -> None:
        """Refuse an upload (``dcc.Upload`` data URLs and names) with too many files, names
        that are not text, or too many bytes in all, before decoding any file.

        Raises
        ------
        VolumeError
            Saying which limit, and naming the file when one is to blame.
        """
        if len(contents) != len(filenames):
            raise VolumeError("upload: the files and their names disagree")
        for index, name in enumerate(filenames):
            if not isinstance(name, str):
                raise VolumeError(f"upload: the name of file {index + 1} is not text")
        dicom = is_dicom_upload(filenames)
        most = MAX_DICOM_FILES if dicom else self.max_files
        if len(contents) > most:
            kind = "the files of one DICOM series" if dicom else "the modalities of one case"
            raise VolumeError(
                f"upload: {len(contents)} files is over the limit of {most} files ({kind})"
            )
        encoded = sum(len(content) for content in contents if isinstance(content, str))
        total = encoded * 3 // 4
        if total > self.total_bytes(limits):
            raise VolumeError(
                f"upload: {file_size(total)} in all is over the "
                f"{file_size(self.total_bytes(limits))} limit per upload"
            )


DEFAULT_SERVER_LIMITS = ServerLimits()
