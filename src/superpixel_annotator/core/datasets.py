"""The cases of a dataset folder, found from file and folder names (no image is read).

A dataset folder holds its cases either as image files directly inside it (one case per
file) or as subfolders (one case per subfolder), or both. A case folder's co-registered
modalities are its image files and its subfolders holding DICOM files (``t1c/*.dcm``); a
case folder with neither, holding DICOM files itself, is a case of that series. DICOM
files are told by their ``DICM`` marker, read from a few files of a folder at most
(:func:`~.dicom.is_dicom_folder`): a folder of several series is one case, refused when
opened. Names tell modalities, label files and masks apart:

- A name is split into *tokens* on every character that is not a letter or a digit, and
  compared case-insensitively: ``BraTS-GLI-00000-000-t2f`` has the tokens ``brats``,
  ``gli``, ``00000``, ``000`` and ``t2f``.
- A *mask* has ``mask`` in a token (``brainmask``, ``brain_mask``): masks are ignored.
- A *label* has a token from :data:`LABEL_WORDS`, or a BraTS 2013 token ``ot`` followed by
  ``multi`` or ``bin`` (``OTMultiClass``, ``OTBinary``): it is the case's starting
  annotation, not a modality.
- Any other image file is a modality. Its last token naming a known modality (see
  :data:`KNOWN_MODALITIES`) gives its name and place: known modalities are shown first, in
  the order of :data:`KNOWN_MODALITIES`, and the other files after them, sorted by file
  name and named by their file stem.

Every refusal of the whole folder is a :class:`DatasetError` whose one-line message names
the folder; an entry that cannot be a case is reported in :attr:`Dataset.problems` instead,
and the other cases stay usable.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .dicom import is_dicom_folder
from .image_files import error_line, printable

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
MAX_DATASET_ENTRIES = 100_000
"""The most entries listed in the dataset folder and in each case folder."""

KNOWN_MODALITIES = {
    "FLAIR": ("flair", "t2f", "fla"),
    "T1c": ("t1c", "t1ce", "t1gd", "t1km", "t1post"),
    "T1": ("t1", "t1n", "t1w"),
    "T2": ("t2", "t2w"),
}
"""Each known modality's display name and the name tokens that mean it, in display order."""

LABEL_WORDS = frozenset(
    {"seg", "segmentation", "label", "labels", "gt", "groundtruth", "truth", "ot", "annotation"}
)
"""Name tokens that make an image file a label file."""

_BRATS_2013_LABEL = re.compile(r"ot(multi|bin)\w*")
_TOKEN = re.compile(r"[^\W_]+")
_MODALITY_OF_TOKEN = {token: name for name, tokens in KNOWN_MODALITIES.items() for token in tokens}
_SERVER_LABELS_FOLDER = "labels"


class DatasetError(ValueError):
    """A folder that cannot be used as a dataset; the message names the folder and the problem."""


@dataclass(frozen=True)
class DatasetCase:
    """One case of a dataset: its image files and, if there is one, its label file.

    Attributes
    ----------
    name : str
        Unique in the dataset, also ignoring case; usable as a file name stem.
    modalities : tuple of Path
        The image files, in display order (the first is shown first); a folder is a DICOM
        series.
    modality_names : tuple of str
        A name per modality, for instance ``("FLAIR", "T1c")``.
    label : Path or None
        An existing label file: the case's starting annotation.
    """

    name: str
    modalities: tuple[Path, ...]
    modality_names: tuple[str, ...]
    label: Path | None


@dataclass(frozen=True)
class Dataset:
    """The cases found in a dataset folder.

    Attributes
    ----------
    root : Path
        The dataset folder.
    cases : tuple of DatasetCase
        Sorted by name.
    problems : tuple of str
        One line per entry that could not be a case, or whose files could not all be used.
    """

    root: Path
    cases: tuple[DatasetCase, ...]
    problems: tuple[str, ...]
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        positions = {case.name: position for position, case in enumerate(self.cases)}
        object.__setattr__(self, "_positions", positions)

    def case(self, name: str) -> DatasetCase:
        """The case called ``name``; :class:`KeyError` when there is none."""
        return self.cases[self._positions[name]]

    def index(self, name: str) -> int:
        """The position of the case called ``name`` in :attr:`cases`.

        Raises
        ------
        ValueError
            When there is no such case.
        """
        if name not in self._positions:
            raise ValueError(f"{printable(name)}: no such case in {printable(str(self.root))}")
        return self._positions[name]


@dataclass
class _Found:
    """A case before its name is known to be unique and its label is chosen."""

    name: str
    entry: str
    modalities: tuple[Path, ...] = ()
    modality_names: tuple[str, ...] = ()
    labels: list[Path] = field(default_factory=list)


def is_dataset_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder, to be read with :func:`find_dataset` (not a scan file)."""
    return Path(path).is_dir()


def find_dataset(
    root: str | os.PathLike,
    *,
    modalities: str | None = None,
    exclude: Sequence[str | os.PathLike] = (),
) -> Dataset:
    """Find the cases of the dataset folder ``root`` from names; no image file is opened.

    Parameters
    ----------
    root : str or path-like
        The dataset folder. Each image file directly inside it is a case named by the file
        name without its image suffix; a label file next to it (``<case>_seg.nii.gz``,
        ``<case>-label.nii``...) is that case's label. Each subfolder holding image files
        or DICOM series (see the module's description) is a case named by the folder.
        Hidden entries, and folders below a case's DICOM subfolders, are ignored.
    modalities : str, optional
        Comma-separated, case-insensitive glob patterns, one per modality in display order
        (``"*_ct.nii.gz,*_pet.nii.gz"``), replacing the matching by name in case folders.
        A modality is named by its pattern without ``*``, image suffix and the separators
        left at either end (``ct``), or by the whole pattern if that leaves nothing. A case
        folder where a pattern matches no file or several files is a problem, not a case.
        Patterns match DICOM series subfolders by their names. Image files directly in
        ``root``, and case folders that are one DICOM series, are cases whatever the
        patterns.
    exclude : sequence of path-like
        Folders that are not cases, such as the server's labels folder. A folder named
        ``labels`` directly in ``root`` is never a case.

    Returns
    -------
    Dataset
        When two entries give the same case name (ignoring case), neither is used and a
        problem says so; so does a case with several label files, which uses the shortest
        (then alphabetically first) name.

    Raises
    ------
    DatasetError
        When ``root`` is not a readable folder of at most :data:`MAX_DATASET_ENTRIES`
        entries, the patterns are malformed, or no case is found.
    """
    root = Path(root)
    where = printable(os.fspath(root))
    if not root.is_dir():
        raise DatasetError(f"{where}: not a folder")
    patterns = _modality_patterns(modalities, where)
    try:
        entries = _list_folder(root)
    except OSError as error:
        raise DatasetError(f"{where}: cannot be read ({error_line(error)})") from None
    if len(entries) > MAX_DATASET_ENTRIES:
        raise DatasetError(f"{where}: holds more than {MAX_DATASET_ENTRIES:,} entries")
    excluded = {Path(folder).resolve() for folder in exclude}
    problems: list[str] = []
    found: list[_Found] = []
    flat_labels: list[Path] = []
    for entry in entries:
        kind = _entry_kind(entry, problems)
        if kind == "folder" and not _is_excluded(entry, excluded):
            case = _read_case_folder(Path(entry.path), patterns, problems)
            found += [case] if case else []
        elif kind == "file" and (stem := _image_stem(entry.name)) is not None:
            if is_label_name(stem):
                flat_labels.append(Path(entry.path))
            elif not is_mask_name(stem):
                modality = modality_of(stem) or stem
                found.append(_Found(stem, entry.name, (Path(entry.path),), (modality,)))
    cases = _unique_cases(found, flat_labels, problems)
    if not cases:
        raise DatasetError(_no_case_message(where, problems))
    return Dataset(root, tuple(sorted(cases, key=lambda case: case.name)), tuple(problems))


def name_tokens(stem: str) -> list[str]:
    """The lower-case runs of letters and digits in ``stem``."""
    return [token.casefold() for token in _TOKEN.findall(stem)]


def is_mask_name(stem: str) -> bool:
    """Whether a file stem names a mask (``mask`` in a token)."""
    return any("mask" in token for token in name_tokens(stem))


def is_label_name(stem: str) -> bool:
    """Whether a file stem names a label file that is not a mask."""
    return not is_mask_name(stem) and any(_is_label_token(t) for t in name_tokens(stem))


def _is_modality_name(stem: str) -> bool:
    return not (is_label_name(stem) or is_mask_name(stem))


def modality_of(stem: str) -> str | None:
    """The known modality named by the last token of ``stem`` that names one, if any."""
    named = [
        _MODALITY_OF_TOKEN[token] for token in name_tokens(stem) if token in _MODALITY_OF_TOKEN
    ]
    return named[-1] if named else None


def _image_stem(file_name: str) -> str | None:
    """``file_name`` without its image suffix (any case), or None when it has none or
    nothing else."""
    stem = _without_image_suffix(file_name)
    return stem if stem and stem != file_name else None


def _without_image_suffix(text: str) -> str:
    lowered = text.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return text[: -len(suffix)]
    return text


def _is_label_token(token: str) -> bool:
    return token in LABEL_WORDS or _BRATS_2013_LABEL.fullmatch(token) is not None


def _list_folder(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder`` that are not hidden, sorted by name; one more than
    :data:`MAX_DATASET_ENTRIES` tells that there are too many."""
    with os.scandir(folder) as listing:
        entries = list(itertools.islice(listing, MAX_DATASET_ENTRIES + 1))
    if len(entries) > MAX_DATASET_ENTRIES:
        return entries
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _entry_kind(entry: os.DirEntry, problems: list[str], where: str = "") -> str | None:
    """``"folder"``, ``"file"`` or None (neither, or unreadable: then a problem says so,
    naming the entry after ``where``)."""
    try:
        if entry.is_dir():
            return "folder"
        return "file" if entry.is_file() else None
    except OSError as error:
        problems.append(f"{where}{printable(entry.name)}: cannot be read ({error_line(error)})")
        return None


def _is_excluded(entry: os.DirEntry, excluded: set[Path]) -> bool:
    return entry.name.lower() == _SERVER_LABELS_FOLDER or Path(entry.path).resolve() in excluded


def _modality_patterns(text: str | None, where: str) -> tuple[tuple[str, str], ...] | None:
    """(name, pattern) of each modality pattern in ``text``, None without text."""
    if text is None:
        return None
    patterns = [item.strip() for item in text.split(",")]
    if "" in patterns:
        raise DatasetError(
            f"{where}: the modality patterns {printable(text)!r} have an empty item; "
            "give comma-separated patterns such as '*_ct.nii.gz,*_pet.nii.gz'"
        )
    named = tuple((_pattern_name(pattern), pattern) for pattern in patterns)
    names = [name.casefold() for name, _ in named]
    if len(set(names)) < len(names):
        raise DatasetError(
            f"{where}: the modality patterns {printable(text)!r} give the same modality "
            "name twice; each pattern names one modality"
        )
    return named


def _pattern_name(pattern: str) -> str:
    name = _without_image_suffix(pattern.replace("*", ""))
    return re.sub(r"^[\W_]+|[\W_]+$", "", name) or pattern


def _read_case_folder(
    folder: Path, patterns: tuple[tuple[str, str], ...] | None, problems: list[str]
) -> _Found | None:
    """The case in ``folder``, or None (a problem says why)."""
    where = printable(folder.name) + "/"
    try:
        entries = _list_folder(folder)
    except OSError as error:
        problems.append(f"{where}: cannot be read ({error_line(error)})")
        return None
    if len(entries) > MAX_DATASET_ENTRIES:
        problems.append(f"{where}: holds more than {MAX_DATASET_ENTRIES:,} entries")
        return None
    images = _case_images(entries, problems, where)
    if not any(map(_is_modality_name, images.values())) and is_dicom_folder(folder):
        return _series_case(folder, images)
    if not images:
        problems.append(
            f"{where}: holds no image file ({', '.join(IMAGE_SUFFIXES)}) and no DICOM series"
        )
        return None
    same_stem = _same_names(images)
    if same_stem:
        problems.append(f"{where}: {same_stem} have the same name; rename one")
        return None
    if patterns is None:
        return _match_by_name(folder, images, problems)
    return _match_by_patterns(folder, images, patterns, problems)


def _case_images(entries: list[os.DirEntry], problems: list[str], where: str) -> dict[str, str]:
    """The image files and DICOM series subfolders (not named as labels or masks) among a
    case folder's ``entries``: entry name to stem, a subfolder's stem being its name."""
    images = {}
    for entry in entries:
        stem = _image_stem(entry.name)
        kind = _entry_kind(entry, problems, where)
        if kind == "file" and stem is not None:
            images[entry.name] = stem
        elif kind == "folder" and _is_modality_name(entry.name) and is_dicom_folder(entry.path):
            images[entry.name] = entry.name
    return images


def _series_case(folder: Path, images: dict[str, str]) -> _Found:
    """The case of a folder holding one DICOM series, with the label files in it."""
    name = folder.name
    case = _Found(name, printable(name) + "/", (folder,), (modality_of(name) or name,))
    case.labels += [folder / name for name, stem in images.items() if is_label_name(stem)]
    return case


def _same_names(stems: dict[str, str]) -> str:
    """The first group of entries whose names are equal ignoring case, as text, or ``""``."""
    groups: dict[str, list[str]] = {}
    for entry, stem in stems.items():
        groups.setdefault(stem.casefold(), []).append(entry)
    clashes = [group for group in groups.values() if len(group) > 1]
    return " and ".join(printable(entry) for entry in clashes[0]) if clashes else ""


def _match_by_name(folder: Path, images: dict[str, str], problems: list[str]) -> _Found | None:
    """The case of a folder whose modalities are told by their names."""
    where = printable(folder.name) + "/"
    case = _Found(folder.name, where)
    by_modality: dict[str, list[str]] = {name: [] for name in KNOWN_MODALITIES}
    others = []
    for file_name, stem in images.items():
        if is_label_name(stem):
            case.labels.append(folder / file_name)
        elif not is_mask_name(stem):
            modality = modality_of(stem)
            (by_modality[modality] if modality else others).append(file_name)
    ordered = []
    for modality, file_names in by_modality.items():
        if file_names:
            first, *rest = sorted(file_names, key=_shortest_first)
            ordered.append((folder / first, modality))
            others += rest
    ordered += [(folder / name, images[name]) for name in sorted(others)]
    if not ordered:
        problems.append(f"{where}: holds only label and mask files, no image to annotate")
        return None
    case.modalities = tuple(path for path, _ in ordered)
    case.modality_names = tuple(name for _, name in ordered)
    return case


def _match_by_patterns(
    folder: Path,
    images: dict[str, str],
    patterns: tuple[tuple[str, str], ...],
    problems: list[str],
) -> _Found | None:
    """The case of a folder whose modalities are given by glob patterns."""
    where = printable(folder.name) + "/"
    case = _Found(folder.name, where)
    matched = []
    for name, pattern in patterns:
        pattern_casefolded = pattern.casefold()
        files = sorted(f for f in images if fnmatch.fnmatchcase(f.casefold(), pattern_casefolded))
        if len(files) != 1:
            which = ", ".join(printable(f) for f in files) if files else "no file"
            problems.append(f"{where}: the modality pattern {printable(pattern)!r} matches {which}")
            return None
        matched.append((files[0], name))
    file_names = [file_name for file_name, _ in matched]
    if len(set(file_names)) < len(file_names):
        problems.append(f"{where}: two modality patterns match the same file")
        return None
    case.modalities = tuple(folder / file_name for file_name in file_names)
    case.modality_names = tuple(name for _, name in matched)
    unmatched = sorted(set(images) - set(file_names))
    case.labels += [folder / f for f in unmatched if is_label_name(images[f])]
    return case


def _shortest_first(file_name: str) -> tuple[int, str]:
    return len(file_name), file_name


def _unique_cases(
    found: list[_Found], flat_labels: list[Path], problems: list[str]
) -> list[DatasetCase]:
    """The cases whose names are unique ignoring case, each with its chosen label."""
    by_name: dict[str, list[_Found]] = {}
    for case in found:
        by_name.setdefault(case.name.casefold(), []).append(case)
    for label in flat_labels:
        owner = _label_owner(_image_stem(label.name) or "")
        if owner.casefold() in by_name:
            by_name[owner.casefold()][0].labels.append(label)
        elif owner:
            problems.append(f"{printable(label.name)}: a label file for {owner!r}, no such case")
        else:
            problems.append(f"{printable(label.name)}: a label file that names no case")
    cases = []
    for same_name in by_name.values():
        case = same_name[0]
        if len(same_name) > 1:
            entries = " and ".join(printable(other.entry) for other in same_name)
            problems.append(f"{entries}: give the same case name; none is used")
        elif not case.name.isprintable():
            problems.append(f"{printable(case.entry)}: the name has unprintable characters")
        else:
            cases.append(_with_label(case, problems))
    return cases


def _label_owner(stem: str) -> str:
    """The case a label file next to the case files belongs to: the name before its first
    label token (``BraTS-GLI-00000-000`` for ``BraTS-GLI-00000-000-seg``)."""
    for token in _TOKEN.finditer(stem):
        if _is_label_token(token.group().casefold()):
            return re.sub(r"[\W_]+$", "", stem[: token.start()])
    return ""


def _with_label(case: _Found, problems: list[str]) -> DatasetCase:
    label = min(case.labels, key=lambda path: _shortest_first(path.name), default=None)
    if len(case.labels) > 1:
        names = ", ".join(sorted(printable(path.name) for path in case.labels))
        problems.append(
            f"{case.entry}: several label files ({names}); {printable(label.name)} is used"
        )
    return DatasetCase(case.name, case.modalities, case.modality_names, label)


def _no_case_message(where: str, problems: list[str]) -> str:
    message = (
        f"{where}: no case found; looked for image files ({', '.join(IMAGE_SUFFIXES)}), "
        "one case per file directly in the folder or per subfolder holding them or a "
        "DICOM series"
    )
    if problems:
        message += f"; {len(problems)} entries could not be cases, the first: {problems[0]}"
    return message
