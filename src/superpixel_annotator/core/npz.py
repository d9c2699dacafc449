"""Reading arrays from ``.npz`` archives that may be damaged or hostile (annotation states sent
by browsers, files of a shared cache) with bounded work: a member's declared size and its
``.npy`` header are checked before any of its data is read."""

from __future__ import annotations

import math
import struct
import threading
import tokenize
import zipfile
import zlib
from collections.abc import Collection

import numpy as np
from numpy.lib import format as npy_format

NPY_HEADER_BYTES = 4096
"""The largest ``.npy`` header read; ``np.savez`` writes headers of at most a few hundred
bytes."""
_HEADER_READERS = {
    (1, 0): npy_format.read_array_header_1_0,
    (2, 0): npy_format.read_array_header_2_0,
}
_READ_CHUNK_BYTES = 2**24
# numpy parses a header with ast.literal_eval, and CPython 3.11 can raise SystemError when two
# threads build an AST at once (python/cpython#106905): one server thread per request does.
_HEADER_LOCK = threading.Lock()
READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    struct.error,
    SyntaxError,
    TypeError,
    tokenize.TokenError,
)
"""What zipfile, zlib and numpy's header parser raise on damaged or forged input."""


class ArchiveError(ValueError):
    """An archive member that is damaged, or larger or other than expected."""


def read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    max_bytes: int,
    *,
    dtypes: Collection[np.dtype] | None = None,
    ndim: int | None = None,
    stored: bool = False,
) -> np.ndarray:
    """The array of one member of an archive written by ``np.savez``, read only after its
    declared sizes fit ``max_bytes``.

    Parameters
    ----------
    archive : zipfile.ZipFile
        The open archive.
    info : zipfile.ZipInfo
        The member.
    max_bytes : int
        The most bytes its array data may take.
    dtypes : collection of numpy.dtype, optional
        The dtypes allowed; by default any but those holding Python objects.
    ndim : int, optional
        The number of dimensions required; by default any.
    stored : bool
        Whether it must be stored uncompressed, as ``np.savez`` writes it.

    Returns
    -------
    ndarray

    Raises
    ------
    ArchiveError
        When the member is compressed otherwise than allowed, encrypted, larger than
        ``max_bytes`` or than its declared size, of another dtype or shape, or truncated;
        the message starts with the member's name.
    """
    plain = (zipfile.ZIP_STORED,) if stored else (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
    if info.compress_type not in plain or info.flag_bits & 1:
        raise ArchiveError(f"{info.filename} is not a plain array")
    if info.file_size > max_bytes + NPY_HEADER_BYTES:
        raise ArchiveError(f"{info.filename} is too large")
    try:
        with archive.open(info) as member:
            return _read_array(member, info, min(max_bytes, info.file_size), dtypes, ndim)
    except ArchiveError:
        raise
    except READ_ERRORS as error:
        raise ArchiveError(f"{info.filename} cannot be read ({error!r})") from None


def _read_array(member, info: zipfile.ZipInfo, max_bytes: int, dtypes, ndim) -> np.ndarray:
    name = info.filename
    version = npy_format.read_magic(member)
    if version not in _HEADER_READERS:
        raise ArchiveError(f"{name} is not a plain array")
    with _HEADER_LOCK:
        shape, fortran_order, dtype = _HEADER_READERS[version](
            member, max_header_size=NPY_HEADER_BYTES
        )
    wrong_dtype = dtype.hasobject or (dtypes is not None and dtype not in dtypes)
    if wrong_dtype or (ndim is not None and len(shape) != ndim):
        raise ArchiveError(f"{name} has the wrong type ({dtype}, {len(shape)}D)")
    if math.prod(shape) * dtype.itemsize > max_bytes:
        raise ArchiveError(f"{name} is too large, or truncated")
    array = np.empty(shape, dtype, order="F" if fortran_order else "C")
    view = memoryview(array.reshape(-1, order="A").view(np.uint8))
    filled = 0
    while filled < view.nbytes:
        count = member.readinto(view[filled : filled + _READ_CHUNK_BYTES])
        if not count:
            raise ArchiveError(f"{name} is truncated")
        filled += count
    return array
