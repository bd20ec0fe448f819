"""The apps' import graph has no cycle between connections/ and exports/: exports uses
connections (sources, drivers, policies), never the other way round, even through an
import inside a function (issue 19). No test module imports another test module or a
conftest: what tests share is in tests/factories.py (helpers) and conftest.py (fixtures)."""

import ast
import os
from pathlib import Path

from tests.factories import ROOT


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def imported_names(path: Path) -> set[str]:
    """Every module a file imports, and every name it imports from one, dotted, in functions
    too: `from tests import test_x` gives "tests" and "tests.test_x", a relative import keeps
    its dots (`from . import test_x`: ".test_x", `from .conftest import f`: ".conftest.f")."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.add(module)
            found.update(
                f"{module}.{alias.name}" if node.module else module + alias.name
                for alias in node.names
            )
    return found


def names_a_test_module(name: str) -> bool:
    return any(part == "conftest" or part.startswith("test_") for part in name.split("."))


def all_test_modules():
    """Every file named test_*.py in the project, outside .venv (and .git)."""
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in (".venv", ".git")]
        for name in files:
            if name.startswith("test_") and name.endswith(".py"):
                yield Path(folder) / name


def test_connections_imports_nothing_of_exports():
    offending = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / "connections").rglob("*.py")
        if "tests" not in path.relative_to(ROOT).parts
        for module in imported_modules(path)
        if module == "exports" or module.startswith("exports.")
    }
    assert not offending, sorted(offending)


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from exports.models import ExportJob\n")
    assert imported_modules(module) == {"exports.models"}


def test_no_test_module_imports_another_test_module_or_a_conftest():
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in all_test_modules()
        for name in imported_names(path)
        if names_a_test_module(name)
    }
    assert not offending, sorted(offending)


def test_the_check_sees_every_way_to_import_a_test_module(tmp_path):
    module = tmp_path / "test_m.py"
    module.write_text(
        "import conftest\n"
        "import exports.tests.test_cluster\n"
        "from tests import test_settings as settings\n"
        "from . import test_other\n"
        "from .conftest import helper\n"
        "from tests.factories import ROOT\n"
        "from django.test import TestCase\n"
        "def f():\n"
        "    from quality.tests.test_views import pages\n"
    )
    assert {name for name in imported_names(module) if names_a_test_module(name)} == {
        "conftest",
        "exports.tests.test_cluster",
        "tests.test_settings",
        ".test_other",
        ".conftest",
        ".conftest.helper",
        "quality.tests.test_views",
        "quality.tests.test_views.pages",
    }
