import builtins
import json
import re
from pathlib import Path

import pytest

from superpixel_annotator.core import label_tables
from superpixel_annotator.core.label_tables import (
    BRATS_LABELS,
    LABEL_COLORS,
    MAX_LABEL_TABLE_BYTES,
    PRESETS,
    LabelTableError,
    read_label_table,
)
from superpixel_annotator.core.palette import LabelClass

ITK_SNAP = """\
################################################
# ITK-SnAP Label Description File
# File format:
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
################################################
    0     0    0    0        0  0  0    "Clear Label"
    1   255    0    0        1  1  1    "Necrotic core"
    2     0  255    0      0.5  1  0    "Oedema, around the tumour"
    4   0    0  255        1  0  1    "Label 4"
"""

SLICER = """\
# Color table file /home/user/tumour.ctbl
# 3 values
0 Background 0 0 0 0
1 necrosis 128 174 128 255
2 oedema 241 214 145 255
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(source) -> str:
    """The message of the LabelTableError reading ``source`` raises; checked to be one line
    naming the file."""
    with pytest.raises(LabelTableError) as caught:
        read_label_table(source)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{source}: ")
    return message


# Presets


@pytest.mark.parametrize("name", ["brats", "BraTS", "BRATS"])
def test_the_brats_preset(name):
    assert read_label_table(name) is BRATS_LABELS
    assert PRESETS["brats"] is BRATS_LABELS


def test_the_brats_labels():
    assert [(label.value, label.name) for label in BRATS_LABELS] == [
        (1, "Necrotic core"),
        (2, "Oedema"),
        (3, "Non-enhancing core"),
        (4, "Enhancing tumour"),
    ]
    colors = [label.color for label in BRATS_LABELS]
    assert all(re.fullmatch("#[0-9a-f]{6}", color) for color in colors)
    assert len(set(colors)) == len(colors)


def test_a_preset_name_as_a_path_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "no such file" in refusal(Path("brats"))


def test_an_unknown_name_lists_the_presets(tmp_path):
    message = refusal("tumours")
    assert message == "tumours: no such file, nor a preset (brats)"
    assert refusal(tmp_path / "missing.txt").endswith("no such file, nor a preset (brats)")


# Formats


@pytest.mark.parametrize("name", ["labels.txt", "labels.label", "labels"])
def test_itk_snap_label_descriptions(tmp_path, name):
    assert read_label_table(write(tmp_path, name, ITK_SNAP)) == (
        LabelClass(1, "Necrotic core", "#ff0000"),
        LabelClass(2, "Oedema, around the tumour", "#00ff00"),
        LabelClass(4, "Label 4", "#0000ff"),
    )


@pytest.mark.parametrize("name", ["tumour.ctbl", "tumour.txt"])
def test_slicer_colour_tables(tmp_path, name):
    assert read_label_table(write(tmp_path, name, SLICER)) == (
        LabelClass(1, "necrosis", "#80ae80"),
        LabelClass(2, "oedema", "#f1d691"),
    )


def test_slicer_names_with_spaces(tmp_path):
    path = write(tmp_path, "t.ctbl", "0 background 0 0 0 0\n3 white matter 1 2 3 255\n")
    assert read_label_table(path) == (LabelClass(3, "white matter", "#010203"),)


def test_json_label_tables(tmp_path):
    table = [
        {"value": 2, "name": "Oedema", "color": "#FFE119"},
        {"value": 1, "name": " Tumour ", "color": [0, 128, 255]},
        {"value": 23, "name": "No colour"},
        {"value": 0, "name": "Background"},
    ]
    path = write(tmp_path, "labels.json", json.dumps(table))
    assert read_label_table(path) == (
        LabelClass(2, "Oedema", "#ffe119"),
        LabelClass(1, "Tumour", "#0080ff"),
        LabelClass(23, "No colour", LABEL_COLORS[22 % len(LABEL_COLORS)]),
    )
    assert read_label_table(write(tmp_path, "labels.txt", json.dumps(table[:1]))) == (
        LabelClass(2, "Oedema", "#ffe119"),
    )


def test_csv_label_tables(tmp_path):
    text = "Value, Name ,Color\n1,Tumour,#e6194b\n\n2,Oedema,255 225 25\n3,Other,\n"
    assert read_label_table(write(tmp_path, "labels.csv", text)) == (
        LabelClass(1, "Tumour", "#e6194b"),
        LabelClass(2, "Oedema", "#ffe119"),
        LabelClass(3, "Other", LABEL_COLORS[2]),
    )
    text = "name,value\nTumour,7\n"
    assert read_label_table(write(tmp_path, "labels.txt", text)) == (
        LabelClass(7, "Tumour", LABEL_COLORS[6]),
    )


def test_slicer_csv_colour_tables(tmp_path):
    text = (
        "LabelValue,Name,Color_R,Color_G,Color_B,Color_A\n"
        "0,Background,0,0,0,0\n"
        "1,Liver,221,130,101,255\n"
    )
    assert read_label_table(write(tmp_path, "liver.csv", text)) == (
        LabelClass(1, "Liver", "#dd8265"),
    )


def test_a_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"\xef\xbb\xbfvalue,name\n1,Tumour\n")
    assert read_label_table(path)[0].name == "Tumour"


def test_default_colours_follow_the_value(tmp_path):
    table = [{"value": value, "name": f"L{value}"} for value in (1, 20, 21, 255)]
    labels = read_label_table(write(tmp_path, "labels.json", json.dumps(table)))
    assert [label.color for label in labels] == [
        LABEL_COLORS[0],
        LABEL_COLORS[19],
        LABEL_COLORS[0],
        LABEL_COLORS[254 % 20],
    ]
    assert len(set(LABEL_COLORS)) == len(LABEL_COLORS) == 20


def test_all_255_labels(tmp_path):
    table = [{"value": value, "name": "x" * 64} for value in range(1, 256)]
    labels = read_label_table(write(tmp_path, "labels.json", json.dumps(table)))
    assert [label.value for label in labels] == list(range(1, 256))


# Refusals


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("a.txt", '    1 255 0 0 1 1 1 "A"\n  256 0 0 0 1 1 1 "B"\n', "line 2: the value '256'"),
        ("a.txt", '1 255 0 0 1 1 1 "A"\n1 0 0 0 1 1 1 "B"\n', "line 2: value 1 is given twice"),
        ("a.txt", '1 255 0 0 1 1 1 "A"\n2 0 0 0 1 1\n', "line 2: not an ITK-SNAP label line"),
        ("a.txt", '1 256 0 0 1 1 1 "A"\n', "line 1: the colour"),
        ("a.txt", '# only\n\n1 0 0 0 1 1 1 ""\n', "line 3: the label has no name"),
        ("a.ctbl", "1 a 0 0 0 255\n-1 b 0 0 0 255\n", "line 2: the value '-1'"),
        ("a.ctbl", "1 a 0 0 0\n", "line 1: not a label table line"),
        ("a.ctbl", "1 a 0 0 300 255\n", "line 1: the colour"),
        ("a.ctbl", "x a 0 0 0 255\n", "line 1: not a label table line"),
        ("a.json", '[{"value": 1,\n "name": "A",,}]', "line 2: not valid JSON"),
        ("a.json", '{"value": 1, "name": "A"}', "JSON: expected a list"),
        (
            "a.json",
            '[{"value": 1, "name": "A"}, {"name": "B"}]',
            'item 2: not an object with "value"',
        ),
        ("a.json", '[{"value": 1.5, "name": "A"}]', "item 1: the value '1.5' is not an integer"),
        ("a.json", '[{"value": true, "name": "A"}]', "item 1: the value 'True' is not an integer"),
        ("a.json", '[{"value": 1, "name": 5}]', "item 1: the label has no name"),
        ("a.json", '[{"value": 1, "name": "A\\nB"}]', "item 1: the name 'A?B' has unprintable"),
        ("a.json", f'[{{"value": 1, "name": "{"n" * 65}"}}]', "item 1: the name is 65 characters"),
        ("a.json", '[{"value": 1, "name": "A", "color": "#12345"}]', "item 1: the colour '#12345'"),
        ("a.json", '[{"value": 1, "name": "A", "color": [1, 2]}]', "item 1: the colour"),
        ("a.json", '[{"value": 1, "name": "A", "color": [1, 2, 3.0]}]', "item 1: the colour"),
        ("a.json", '[{"value": 1, "name": "A", "color": "red"}]', "item 1: the colour 'red'"),
        ("a.csv", "value,colour\n1,#ffffff\n", "line 1: a CSV label table starts with a header"),
        ("a.csv", "value,name\n1,A\n2,B,C\n", "line 3: 3 fields, the header names 2"),
        ("a.csv", "value,name\n1,A\n1,B\n", "line 3: value 1 is given twice (first line 2)"),
        ("a.csv", "value,name\none,A\n", "line 2: the value 'one'"),
        ("a.txt", "Tumour 1 #ff0000\n", "line 1: not a label table line"),
        ("a.txt", "hello\n", "line 1: not a label table line"),
    ],
)
def test_invalid_tables_name_the_line(tmp_path, name, text, problem):
    path = write(tmp_path, name, text)
    message = refusal(path)
    assert message.startswith(f"{path}: {problem}"), message


@pytest.mark.parametrize(
    "name, text",
    [
        ("a.txt", ""),
        ("a.txt", "# comments only\n\n"),
        ("a.txt", '0 0 0 0 0 0 0 "Clear Label"\n'),
        ("a.ctbl", "0 Background 0 0 0 0\n"),
        ("a.json", "[]"),
        ("a.csv", "value,name\n"),
        ("a.csv", ""),
    ],
)
def test_a_table_without_labels(tmp_path, name, text):
    path = write(tmp_path, name, text)
    message = refusal(path)
    assert message in (
        f"{path}: holds no label (values 1 to 255)",
        f"{path}: line 1: a CSV label table starts with a header naming value and name",
    )


def test_undecodable_text(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes(b'1 255 0 0 1 1 1 "\xff"\n')
    assert refusal(path) == f"{path}: not UTF-8 text (byte 18 cannot be decoded)"


def test_a_large_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "labels.txt"
    with path.open("wb") as file:
        file.truncate(MAX_LABEL_TABLE_BYTES + 1)

    def refuse(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(Path, "open", refuse)
    assert (
        refusal(path) == f"{path}: 1,000,001 bytes is over the label table limit of 1,000,000 bytes"
    )


def test_a_file_at_the_size_limit_is_read(tmp_path):
    text = '1 255 0 0 1 1 1 "A"\n'
    path = write(tmp_path, "labels.txt", text + "#" * (MAX_LABEL_TABLE_BYTES - len(text)))
    assert read_label_table(path) == (LabelClass(1, "A", "#ff0000"),)


def test_a_file_that_grows_while_read_is_refused(tmp_path, monkeypatch):
    path = write(tmp_path, "labels.txt", '1 255 0 0 1 1 1 "A"\n')
    monkeypatch.setattr(label_tables, "MAX_LABEL_TABLE_BYTES", 5)
    real_stat = Path.stat
    monkeypatch.setattr(Path, "stat", lambda self, **kwargs: SmallStat(real_stat(self, **kwargs)))
    assert refusal(path) == f"{path}: grew over 5 bytes"


class SmallStat:
    """A stat result that reports a size of 1 byte."""

    def __init__(self, status):
        self.st_mode = status.st_mode
        self.st_size = 1


def test_a_folder_is_not_a_table(tmp_path):
    assert refusal(tmp_path) == f"{tmp_path}: not a file"


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("a.json", "[" * 100_000, "not valid JSON (maximum recursion depth"),
        ("a.json", '[{"value": ' + "9" * 5000 + ', "name": "A"}]', "not valid JSON (Exceeds"),
        ("a.ctbl", "9" * 5000 + " a 1 2 3 4\n", "line 1: not a label table line"),
        ("a.csv", "value,name\n1," + "a" * 200_000 + "\n", "line 2: not valid CSV"),
    ],
)
def test_hostile_tables_are_refused_with_one_line(tmp_path, name, text, problem):
    path = write(tmp_path, name, text)
    assert refusal(path).startswith(f"{path}: {problem}")
