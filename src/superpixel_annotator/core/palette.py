"""Label classes: value, name and colour of each annotation label."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LABEL = 255
"""The largest label value; labels are stored as uint8."""


@dataclass(frozen=True)
class LabelClass:
    """One annotation label: its value in the saved file, a name and a hex colour."""

    value: int
    name: str
    color: str


DEFAULT_LABELS = (
    LabelClass(1, "Tumour", "#e6194b"),
    LabelClass(2, "Oedema", "#ffe119"),
    LabelClass(3, "Necrosis", "#4363d8"),
    LabelClass(4, "Enhancing", "#3cb44b"),
    LabelClass(5, "Other", "#f032e6"),
)


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` to an (r, g, b) tuple of ints."""
    value = color.lstrip("#")
    if len(value) != 6:
        raise ValueError(f"expected a colour like #rrggbb, not {color!r}")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
