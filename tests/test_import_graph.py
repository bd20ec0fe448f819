"""The apps' import graph has no cycle between connections/ and exports/: exports uses
connections (sources, drivers, policies), never the other way round, even through an
import inside a function (issue 19)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


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
