"""The layering the code layout promises, checked on the source itself."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "procalign"
FACE_ONLY = {"typer", "rich", "click"}
MAX_FUNCTION_LINES = 80


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", "."), path


def imported(path: Path) -> set[str]:
    """Absolute names of every module imported by the file, relative imports resolved."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().split("/")
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def test_only_the_cli_imports_typer_rich_or_click():
    for name, path in modules():
        if name.startswith("procalign.cli") or name == "procalign.__main__":
            continue
        bad = {m for m in imported(path) if m.split(".")[0] in FACE_ONLY}
        assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("room, forbidden", [
    ("procalign.formats", ("procalign.pipeline", "procalign.math", "procalign.cli", "procalign.estimator",
                           "procalign.transform")),
    ("procalign.math", ("procalign.pipeline", "procalign.formats", "procalign.cli", "procalign.transform",
                        "procalign.estimator", "pathlib", "os", "shutil", "io")),
    ("procalign.pipeline", ("procalign.cli",)),
])
def test_rooms_point_one_way(room, forbidden):
    for name, path in modules():
        if not name.startswith(room):
            continue
        bad = {m for m in imported(path) for f in forbidden if m == f or m.startswith(f + ".")}
        assert not bad, f"{name} imports {bad}"


def test_the_report_does_not_know_the_fit_job():
    bad = {m for m in imported(PACKAGE / "pipeline" / "report.py") if m.startswith("procalign.pipeline.fit")}
    assert not bad, bad


def test_the_math_never_opens_a_file():
    for name, path in modules():
        if name.startswith("procalign.math"):
            calls = {n.func.id for n in ast.walk(ast.parse(path.read_text()))
                     if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            assert "open" not in calls, name


def test_no_function_is_longer_than_80_lines():
    long = []
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, long


def test_the_architecture_checks_see_what_they_check():
    # The import scanner must resolve relative imports, or the tests above pass vacuously.
    found = imported(PACKAGE / "pipeline" / "apply.py")
    assert "procalign.formats" in found and "procalign.math.affine" in found
    assert any(m.startswith("typer") for m in imported(PACKAGE / "cli" / "apply.py"))
