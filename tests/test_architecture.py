"""The package's architecture, read from its source with ``ast`` (nothing is imported).

Each rule is checked on the package and, so that the check itself can be trusted, on a
small package written here that breaks it.
"""

from __future__ import annotations

import ast
import re
from functools import partial
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "superpixel_annotator"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
WEB_LIBRARIES = {"dash", "plotly", "flask", "dash_slicer", "dash_bootstrap_components"}
JS_FUNCTION = re.compile(r"function\s*\w*\s*\(|=>\s*\{")


def modules(package: Path) -> dict[str, ast.Module]:
    """Every module of ``package`` by dotted name."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = ast.parse(path.read_text(), str(path))
    return found


def imported(name: str, tree: ast.Module, is_package: bool) -> list[tuple[str, str | None]]:
    """(module, imported name or None) of each import in a module, made absolute."""
    result = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            result += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".") if is_package else name.split(".")[:-1]
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            result += [(target, alias.name) for alias in node.names]
    return result


def dependencies(package: Path) -> dict[str, set[str]]:
    """The package modules each module imports (a submodule importing its own package
    excluded: that is how a package's ``__init__`` is read first)."""
    trees = modules(package)
    graph = {}
    for name, tree in trees.items():
        is_package = (package.parent / Path(*name.split("."))).is_dir()
        targets = set()
        for module, alias in imported(name, tree, is_package):
            full = f"{module}.{alias}" if alias else module
            targets.add(full if full in trees else module)
        graph[name] = {
            t for t in targets if t in trees and t != name and not name.startswith(t + ".")
        }
    return graph


def import_cycles(package: Path) -> list[list[str]]:
    """Groups of modules that import each other, directly or not."""
    graph = dependencies(package)

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for target in graph[stack.pop()]:
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen

    reach = {name: reachable(name) for name in graph}
    cycles = {
        frozenset({a} | {b for b in reach[a] if a in reach[b]}) for a in graph if a in reach[a]
    }
    return sorted(sorted(cycle) for cycle in cycles)


def long_modules(package: Path) -> list[str]:
    return [
        f"{path.relative_to(package.parent)}: {lines} lines"
        for path in sorted(package.rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]


def long_functions(package: Path) -> list[str]:
    found = []
    for name, tree in modules(package).items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{name}.{node.name}: {lines} lines")
    return found


def core_web_imports(package: Path) -> list[str]:
    core = f"{package.name}.core"
    found = []
    for name, tree in modules(package).items():
        if name == core or name.startswith(core + "."):
            is_package = (package.parent / Path(*name.split("."))).is_dir()
            for module, _ in imported(name, tree, is_package):
                if module.split(".")[0] in WEB_LIBRARIES:
                    found.append(f"{name} imports {module}")
    return found


def layer_web_imports(package: Path, layer: str) -> list[str]:
    """Imports of the web or serve layer or of a web library by the ``layer`` subpackage."""
    below, layers = f"{package.name}.{layer}", {f"{package.name}.web", f"{package.name}.serve"}
    found = []
    for name, tree in modules(package).items():
        if name == below or name.startswith(below + "."):
            is_package = (package.parent / Path(*name.split("."))).is_dir()
            for module, alias in imported(name, tree, is_package):
                full = f"{module}.{alias}" if alias else module
                in_layer = any(full == layer or full.startswith(layer + ".") for layer in layers)
                if in_layer or module.split(".")[0] in WEB_LIBRARIES:
                    found.append(f"{name} imports {full}")
    return found


def private_imports(package: Path) -> list[str]:
    found = []
    for name, tree in modules(package).items():
        is_package = (package.parent / Path(*name.split("."))).is_dir()
        for module, alias in imported(name, tree, is_package):
            private = alias and alias.startswith("_") and not alias.startswith("__")
            if private and module.split(".")[0] == package.name:
                found.append(f"{name} imports {module}.{alias}")
    return found


def javascript_in_strings(package: Path) -> list[str]:
    found = []
    for name, tree in modules(package).items():
        for node in ast.walk(tree):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and JS_FUNCTION.search(node.value) and "return" in node.value:
                found.append(f"{name}, line {node.lineno}")
    return found


RULES = {
    "module over 500 lines": long_modules,
    "function over 80 lines": long_functions,
    "import cycle": import_cycles,
    "core importing a web library": core_web_imports,
    "store importing the web or serve layer or a web library": partial(
        layer_web_imports, layer="store"
    ),
    "pacs importing the web or serve layer or a web library": partial(
        layer_web_imports, layer="pacs"
    ),
    "private name imported from another module": private_imports,
    "JavaScript function in a Python string": javascript_in_strings,
}


@pytest.mark.parametrize("rule", RULES)
def test_the_package_keeps_the_rule(rule):
    assert RULES[rule](PACKAGE) == []


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for relative, text in {"__init__.py": "", "core/__init__.py": "", **files}.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text)
    return package


BROKEN = {
    "module over 500 lines": {"big.py": "x = 1\n" * 501},
    "function over 80 lines": {"long.py": "def f():\n" + "    x = 1\n" * 80},
    "import cycle": {
        "a.py": "from . import b\n",
        "b.py": "from .c import thing\n",
        "c.py": "from .a import x\n",
    },
    "core importing a web library": {"core/view.py": "import plotly.graph_objects as go\n"},
    "store importing the web or serve layer or a web library": {
        "store/__init__.py": "",
        "store/labels.py": "from ..web import ids\n",
        "store/files.py": "from .. import serve\n",
        "store/database.py": "import flask\n",
    },
    "pacs importing the web or serve layer or a web library": {
        "pacs/__init__.py": "",
        "pacs/dicomweb.py": "from ..web.callbacks import pacs\n",
    },
    "private name imported from another module": {"web.py": "from .core.model import _helper\n"},
    "JavaScript function in a Python string": {"js.py": 'CODE = """function(a) { return a; }"""\n'},
}


@pytest.mark.parametrize("rule", RULES)
def test_the_rule_catches_a_package_that_breaks_it(rule, tmp_path):
    assert RULES[rule](write_package(tmp_path, BROKEN[rule]))
