"""Label tables: the value, name and colour of each label, from a file or a preset.

:func:`read_label_table` reads the label description files of ITK-SNAP, the colour tables of
3D Slicer, JSON and CSV. Every refusal is a :class:`LabelTableError` whose one-line message
names the file, the problem and, where one line is to blame, its number.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from .image_files import error_line, printable
from .palette import MAX_LABEL, LabelClass

MAX_LABEL_TABLE_BYTES = 1_000_000
MAX_LABEL_NAME_LENGTH = 64

LABEL_COLORS = (
    "#e6194b",
    "#ffe119",
    "#4363d8",
    "#3cb44b",
    "#f032e6",
    "#f58231",
    "#42d4f4",
    "#911eb4",
    "#bfef45",
    "#fabed4",
    "#469990",
    "#dcbeff",
    "#9a6324",
    "#fffac8",
    "#800000",
    "#aaffc3",
    "#808000",
    "#ffd8b1",
    "#000075",
    "#a9a9a9",
)
"""Distinct colours: a label given without one gets ``LABEL_COLORS[(value - 1) % 20]``."""

BRATS_LABELS = (
    LabelClass(1, "Necrotic core", "#e6194b"),
    LabelClass(2, "Oedema", "#ffe119"),
    # Label 3 is in BraTS 2013-2016 only; later releases fold it into label 1.
    LabelClass(3, "Non-enhancing core", "#4363d8"),
    LabelClass(4, "Enhancing tumour", "#3cb44b"),
)
"""The labels of the BraTS brain tumour segmentation challenges."""

PRESETS = {"brats": BRATS_LABELS}
"""Label tables by name, for :func:`read_label_table`."""

_ITK_SNAP_LINE = re.compile(
    r"(?P<value>\d+)\s+(?P<r>\d+)\s+(?P<g>\d+)\s+(?P<b>\d+)\s+[\d.eE+-]+\s+\d+\s+\d+\s+"
    r'"(?P<name>.*)"'
)
# Longer numbers are out of range anyway, and int() refuses text over 4300 digits.
_INTEGER = re.compile(r"[+-]?\d{1,9}")
_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


class LabelTableError(ValueError):
    """A label table that cannot be used; the message names the file and the problem."""


class _RowError(ValueError):
    """A problem with the table's text, to be prefixed with the file name."""


class _Row(NamedTuple):
    """One label as written in a table, before it is checked."""

    where: str
    value: object
    name: object
    color: object


def read_label_table(source: str | os.PathLike) -> tuple[LabelClass, ...]:
    """The labels of a preset or a label table file.

    Parameters
    ----------
    source : str or path-like
        A name from :data:`PRESETS` (any case; a string only) or a file of at most
        :data:`MAX_LABEL_TABLE_BYTES` bytes of UTF-8 text, in one of these formats:

        - ITK-SNAP label descriptions (``.txt``, ``.label``): ``#`` comments and lines
          ``IDX R G B A VIS MSH "LABEL"``.
        - 3D Slicer colour tables (``.ctbl``, or ``.txt`` lines of this shape): ``#``
          comments and lines ``value name R G B A``.
        - JSON (``.json``, or text starting with ``[``): a list of objects
          ``{"value": 1, "name": "Oedema", "color": "#ffe119"}``, ``color`` optional.
        - CSV (``.csv``, or a first line with a comma): a header row naming the columns
          ``value`` (or ``LabelValue``), ``name`` and optionally ``color`` or ``Color_R``,
          ``Color_G``, ``Color_B`` (3D Slicer's CSV colour tables).

        Value 0, the background, is skipped in every format. A colour is ``#rrggbb`` or
        red, green and blue from 0 to 255; without one a label gets a colour from
        :data:`LABEL_COLORS`.

    Returns
    -------
    tuple of LabelClass
        In the order of the table; values from 1 to :data:`~.palette.MAX_LABEL`, unique,
        names stripped, of 1 to :data:`MAX_LABEL_NAME_LENGTH` printable characters, colours
        as lower-case ``#rrggbb``.

    Raises
    ------
    LabelTableError
        When the source is neither a preset nor a readable file, or the file is too large,
        not UTF-8, of no known format, holds an invalid label or no label at all.
    """
    if isinstance(source, str) and source.casefold() in PRESETS:
        return PRESETS[source.casefold()]
    path = Path(source)
    filename = printable(os.fspath(source))
    text = _read_text(path, filename)
    try:
        labels = _checked_labels(_rows(text, path.suffix.lower()))
    except _RowError as error:
        raise LabelTableError(f"{filename}: {error}") from None
    if not labels:
        raise LabelTableError(f"{filename}: holds no label (values 1 to {MAX_LABEL})")
    return labels


def _read_text(path: Path, filename: str) -> str:
    """The text of a label table file, its size checked before it is read."""
    try:
        status = path.stat()
    except FileNotFoundError:
        presets = ", ".join(PRESETS)
        raise LabelTableError(f"{filename}: no such file, nor a preset ({presets})") from None
    except OSError as error:
        raise LabelTableError(f"{filename}: cannot be read ({error_line(error)})") from None
    if not stat.S_ISREG(status.st_mode):
        raise LabelTableError(f"{filename}: not a file")
    if status.st_size > MAX_LABEL_TABLE_BYTES:
        raise LabelTableError(
            f"{filename}: {status.st_size:,} bytes is over the label table limit of "
            f"{MAX_LABEL_TABLE_BYTES:,} bytes"
        )
    try:
        with path.open("rb") as file:
            content = file.read(MAX_LABEL_TABLE_BYTES + 1)
    except OSError as error:
        raise LabelTableError(f"{filename}: cannot be read ({error_line(error)})") from None
    if len(content) > MAX_LABEL_TABLE_BYTES:
        raise LabelTableError(f"{filename}: grew over {MAX_LABEL_TABLE_BYTES:,} bytes")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LabelTableError(
            f"{filename}: not UTF-8 text (byte {error.start + 1} cannot be decoded)"
        ) from None


def _rows(text: str, suffix: str) -> list[_Row]:
    """The rows of a table, its format told by ``suffix`` or else by its first line."""
    if suffix == ".json" or text.lstrip().startswith(("[", "{")):
        return _json_rows(text)
    if suffix == ".csv":
        return _csv_rows(text)
    lines = list(_data_lines(text))
    if not lines:
        return []
    first = lines[0][1]
    if '"' in first:
        return [_itk_snap_row(number, line) for number, line in lines]
    if "," in first and suffix != ".ctbl":
        return _csv_rows(text)
    return [_slicer_row(number, line) for number, line in lines]


def _data_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number, stripped line) of each line that is neither blank nor a ``#`` comment."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped


def _itk_snap_row(number: int, line: str) -> _Row:
    match = _ITK_SNAP_LINE.fullmatch(line)
    if match is None:
        raise _RowError(f'line {number}: not an ITK-SNAP label line (IDX R G B A VIS MSH "LABEL")')
    color = (match["r"], match["g"], match["b"])
    return _Row(f"line {number}", match["value"], match["name"], color)


def _slicer_row(number: int, line: str) -> _Row:
    fields = line.split()
    if len(fields) < 6 or not all(_INTEGER.fullmatch(f) for f in fields[:1] + fields[-4:]):
        raise _RowError(
            f"line {number}: not a label table line; expected 3D Slicer's 'value name R G B A'"
            " or ITK-SNAP's 'IDX R G B A VIS MSH \"LABEL\"'"
        )
    return _Row(f"line {number}", fields[0], " ".join(fields[1:-4]), tuple(fields[-4:-1]))


def _json_rows(text: str) -> list[_Row]:
    try:
        table = json.loads(text)
    except json.JSONDecodeError as error:
        raise _RowError(f"line {error.lineno}: not valid JSON ({error.msg})") from None
    except (ValueError, RecursionError) as error:
        raise _RowError(f"not valid JSON ({str(error).splitlines()[0]})") from None
    if not isinstance(table, list):
        raise _RowError('JSON: expected a list of {"value": ..., "name": ...} objects')
    rows = []
    for number, item in enumerate(table, start=1):
        if not isinstance(item, dict) or "value" not in item or "name" not in item:
            raise _RowError(f'item {number}: not an object with "value" and "name"')
        rows.append(_Row(f"item {number}", item["value"], item["name"], item.get("color")))
    return rows


def _csv_rows(text: str) -> list[_Row]:
    reader = csv.reader(text.splitlines())
    header = [column.strip().casefold() for column in next(_csv_records(reader), [])]
    value_column = _column(header, "value", "labelvalue")
    name_column = _column(header, "name")
    if value_column is None or name_column is None:
        raise _RowError("line 1: a CSV label table starts with a header naming value and name")
    color_columns = [_column(header, "color", "colour")]
    if color_columns[0] is None:
        color_columns = [_column(header, f"color_{channel}") for channel in "rgb"]
    rows = []
    for fields in _csv_records(reader):
        if not any(field.strip() for field in fields):
            continue
        where = f"line {reader.line_num}"
        if len(fields) != len(header):
            raise _RowError(f"{where}: {len(fields)} fields, the header names {len(header)}")
        colors = [fields[column] for column in color_columns if column is not None]
        color = None
        if any(field.strip() for field in colors):
            color = colors[0] if len(colors) == 1 else tuple(colors)
        rows.append(_Row(where, fields[value_column], fields[name_column], color))
    return rows


def _csv_records(reader) -> Iterator[list[str]]:
    """The records of a CSV reader, its errors as :class:`_RowError`."""
    try:
        yield from reader
    except csv.Error as error:
        raise _RowError(f"line {reader.line_num}: not valid CSV ({error})") from None


def _column(header: list[str], *names: str) -> int | None:
    """The position of the first column called one of ``names``, or None."""
    return next((position for position, column in enumerate(header) if column in names), None)


def _checked_labels(rows: list[_Row]) -> tuple[LabelClass, ...]:
    """The labels of ``rows`` but value 0, each checked, with unique values."""
    labels: list[LabelClass] = []
    first_row: dict[int, str] = {}
    for row in rows:
        value = _label_value(row)
        if value == 0:
            continue
        if value in first_row:
            raise _RowError(f"{row.where}: value {value} is given twice (first {first_row[value]})")
        first_row[value] = row.where
        labels.append(LabelClass(value, _label_name(row), _label_color(row, value)))
    return tuple(labels)


def _integer_or_self(field: object) -> object:
    """A field that is an integer written as text, as an int; any other field unchanged."""
    if isinstance(field, str) and _INTEGER.fullmatch(field.strip()):
        return int(field)
    return field


def _label_value(row: _Row) -> int:
    value = _integer_or_self(row.value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LABEL:
        raise _RowError(
            f"{row.where}: the value {printable(str(row.value))!r} is not an integer "
            f"from 1 to {MAX_LABEL}"
        )
    return value


def _label_name(row: _Row) -> str:
    if not isinstance(row.name, str) or not row.name.strip():
        raise _RowError(f"{row.where}: the label has no name")
    name = row.name.strip()
    if len(name) > MAX_LABEL_NAME_LENGTH:
        raise _RowError(
            f"{row.where}: the name is {len(name)} characters long, over the limit of "
            f"{MAX_LABEL_NAME_LENGTH}"
        )
    if not name.isprintable():
        raise _RowError(f"{row.where}: the name {printable(name)!r} has unprintable characters")
    return name


def _label_color(row: _Row, value: int) -> str:
    """``row``'s colour as ``#rrggbb``: from ``#rrggbb``, three integers 0 to 255 (as a
    sequence or a string with spaces), or from :data:`LABEL_COLORS` when there is none."""
    color = row.color
    if color is None:
        return LABEL_COLORS[(value - 1) % len(LABEL_COLORS)]
    if isinstance(color, str) and _HEX_COLOR.fullmatch(color.strip()):
        return color.strip().lower()
    channels = color.split() if isinstance(color, str) else color
    if isinstance(channels, (list, tuple)) and len(channels) == 3:
        levels = [_integer_or_self(channel) for channel in channels]
        if all(type(level) is int and 0 <= level <= 255 for level in levels):
            return "#" + "".join(f"{level:02x}" for level in levels)
    raise _RowError(
        f"{row.where}: the colour {printable(str(color))[:40]!r} is not #rrggbb "
        "or red, green and blue from 0 to 255"
    )
