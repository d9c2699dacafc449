"""The console script: help, and one-line errors for unusable files."""

import subprocess
import sys

import pytest

from superpixel_annotator.cli import build_parser, main


def test_help_names_the_options():
    help_text = build_parser().format_help()
    for option in ("--host", "--port", "--debug", "file"):
        assert option in help_text


@pytest.mark.parametrize(
    "content", [None, b"", b"not an image\n"], ids=["missing", "empty", "text"]
)
def test_unusable_file_exits_2_with_one_line(tmp_path, capsys, content):
    path = tmp_path / "scan.nii.gz"
    if content is not None:
        path.write_bytes(content)
    assert main([str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(path) in error and "Traceback" not in error


def test_console_script_prints_no_traceback(tmp_path):
    path = tmp_path / "random.nii.gz"
    path.write_bytes(bytes(range(256)) * 4)
    done = subprocess.run(
        [sys.executable, "-m", "superpixel_annotator.cli", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("superpixel-annotator: ") and "Traceback" not in done.stderr
