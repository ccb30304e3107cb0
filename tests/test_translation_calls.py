"""``_()`` is the translation function everywhere: a function that also binds ``_`` as a
throwaway name makes ``_`` local to it, and its ``_("…")`` then fails (UnboundLocalError, or a
call of the wrong object) on the very error path that should speak to the operator."""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

from click.testing import CliRunner

from outreach.cli import main

ROOT = Path(__file__).resolve().parent.parent
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _binds_and_calls(fn: ast.AST) -> tuple[list[int], list[int]]:
    """Lines where ``fn`` binds ``_`` in its own scope, and where it calls ``_()``."""
    binds: list[int] = []
    calls: list[int] = []

    def visit(node: ast.AST, in_comprehension: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _SCOPES):
                continue
            inner = in_comprehension or isinstance(child, _COMPREHENSIONS)
            if isinstance(child, ast.Name) and child.id == "_" and not in_comprehension \
                    and isinstance(child.ctx, ast.Store):
                binds.append(child.lineno)
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) \
                    and child.func.id == "_":
                calls.append(child.lineno)
            visit(child, inner)

    visit(fn, False)
    return binds, calls


def test_no_function_binds_underscore_and_calls_it() -> None:
    found = []
    for path in sorted((ROOT / "outreach").rglob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                binds, calls = _binds_and_calls(fn)
                if binds and calls:
                    found.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: binds _ at "
                                 f"{binds}, calls _() at {calls}")
    assert found == []


def test_the_check_sees_a_binding_and_ignores_comprehensions() -> None:
    tree = ast.parse("def f(x):\n    a, _ = x\n    return _('m')\n"
                     "def g(x):\n    n = [a for a, _ in x]\n    return _('m')\n")
    f, g = tree.body
    assert _binds_and_calls(f) == ([2], [3])
    assert _binds_and_calls(g) == ([], [6])


def test_a_damaged_workbook_is_a_clear_error(tmp_path: Path) -> None:
    book = tmp_path / "ward.xlsx"
    with zipfile.ZipFile(book, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook><sheets><sheet")  # cut off
    r = CliRunner().invoke(main, ["--lang", "vi", "--database-url",
                                  f"sqlite:///{tmp_path / 'o.db'}", "recipients", "import",
                                  str(book), "--list", "x"])
    assert r.exit_code == 1, r.output
    assert f"{book}: không đọc được tệp bảng tính .xlsx (unclosed token: line 1, column 18)" \
        in r.output
    assert "lỗi nội bộ" not in r.output
