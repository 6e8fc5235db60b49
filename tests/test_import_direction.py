"""The import direction of DESIGN.md: strategies/sampling/ml never import the DB or the web
framework; nothing below app/api imports fastapi; only app/ml imports torch; only the adapter
imports alipy; only vector_index and the strategies import faiss."""

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
            names.add(node.module)
    return names


FILES = sorted(APP.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(APP)))
def test_import_direction(path: Path) -> None:
    rel = path.relative_to(APP).as_posix()
    names = _imports(path)
    if rel.startswith(("strategies/", "sampling/", "ml/")):
        assert not names & {"sqlalchemy", "fastapi", "app.models", "app.services", "app.api"}, rel
    if not rel.startswith("api/") and rel not in {"main.py"}:
        assert "fastapi" not in names, rel
    if not rel.startswith("ml/"):
        assert "torch" not in names, rel
    if rel != "strategies/alipy_adapter.py":
        assert "alipy" not in names, rel
    if rel != "sampling/vector_index.py":
        assert "faiss" not in names or rel.startswith("strategies/"), rel
