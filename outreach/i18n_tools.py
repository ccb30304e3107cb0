"""Extracting and updating the interface catalogs with Babel (a developer's tool).

``python -m outreach.i18n_tools update`` extracts every translatable string of ``outreach/``
(``_()``, ``N_()``, ``ngettext()`` calls, plus the click help texts: command docstrings and
``help=`` of options), merges them into ``outreach/locale/vi/LC_MESSAGES/outreach.po`` (new
strings empty, strings gone marked obsolete) and lists the strings still without a Vietnamese
translation; ``python -m outreach.i18n_tools check`` only lists them (exit 1 when any).
``python -m outreach.i18n_tools todo FILE.json`` writes the untranslated msgids to a JSON object
(``{msgid: ""}``; a plural's key is ``singular\u0000plural`` and its value a list of one
string), to be filled in; ``python -m outreach.i18n_tools fill FILE.json`` puts such a file's
translations into the ``.po`` (after ``update``), so translations made on several branches
merge without editing the ``.po`` by hand.
The catalog is compiled in memory when loaded (``outreach.i18n``), so there is no ``.mo`` to
rebuild.
"""

from __future__ import annotations

import ast
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from outreach import i18n

PACKAGE_DIR = Path(__file__).resolve().parent
#: The calls whose first argument (and, for ngettext, second) is a msgid.
KEYWORDS = {"_": (1,), "N_": (1,), "gettext": (1,), "ngettext": (1, 2), "N_plural": (1, 2)}
#: Keyword arguments of click decorators that are shown to the operator.
CLICK_TEXT_KWARGS = ("help", "short_help", "prompt", "epilog")
CLICK_DECORATORS = ("command", "group")


def help_key(text: str) -> str:
    """The msgid of a click help text: dedented as click shows it (``inspect.cleandoc``),
    cut at a ``\\f``."""
    return inspect.cleandoc(text).partition("\f")[0].strip()


def _const_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _func_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def extract(fileobj: IO[bytes], keywords: Any, comment_tags: Any,
            options: dict[str, Any]) -> Iterator[tuple[int, str | None, Any, list[str]]]:
    """A Babel extraction method for outreach's Python files: ``(lineno, funcname, message,
    comments)`` for ``_``/``N_``/``gettext``/``ngettext`` calls with literal strings, for the
    ``help=``/``short_help=``/``prompt=``/``epilog=`` of any call (click options, groups and
    commands) and for the docstring of a function decorated with ``….command(…)`` or
    ``….group(…)`` (click's help). A call with a non-literal argument (an f-string) yields
    nothing: such text cannot be translated, write ``_("… {x} …").format(x=…)``."""
    tree = ast.parse(fileobj.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _func_name(node.func)
            if name in KEYWORDS:
                idx = KEYWORDS[name]
                args = [_const_str(node.args[i - 1]) if len(node.args) >= i else None
                        for i in idx]
                if all(a is not None for a in args):
                    yield (node.lineno, "ngettext" if len(args) == 2 else "_", args, [])
            for kw in node.keywords:
                if kw.arg in CLICK_TEXT_KWARGS:
                    text = _const_str(kw.value)
                    if text and text.strip():
                        yield (kw.value.lineno, "_", [help_key(text)], [])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            cmds = [d for d in node.decorator_list
                    if isinstance(d, ast.Call) and _func_name(d.func) in CLICK_DECORATORS]
            if cmds:
                doc = ast.get_docstring(node, clean=False)
                if doc and not any(kw.arg == "help" for d in cmds for kw in d.keywords):
                    yield (node.lineno, "_", [help_key(doc)], [])


def extract_catalog(root: Path = PACKAGE_DIR) -> Any:
    """Every translatable string under ``root`` as a Babel ``Catalog`` (msgid → locations)."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir

    catalog = Catalog(domain=i18n.DOMAIN, project="outreach", charset="utf-8")
    method_map = [("**.py", "outreach.i18n_tools:extract")]
    for filename, lineno, message, comments, context in extract_from_dir(
            str(root), method_map=method_map, keywords={"_": None, "ngettext": (1, 2)}):
        catalog.add(message, None, [(f"outreach/{filename}", lineno)], auto_comments=comments,
                    context=context)
    return catalog


def read_vi() -> Any:
    """The Vietnamese catalog as stored (a Babel ``Catalog``)."""
    from babel.messages.pofile import read_po

    with i18n.po_path("vi").open("rb") as fh:
        return read_po(fh, locale="vi", domain=i18n.DOMAIN)


def missing(template: Any = None, vi: Any = None) -> list[tuple[str | tuple[str, ...], str]]:
    """The msgids extracted from ``outreach/`` that the Vietnamese catalog does not translate
    (absent, empty or fuzzy), each with its first location ``file:line``, sorted."""
    template = extract_catalog() if template is None else template
    vi = read_vi() if vi is None else vi
    out = []
    for msg in template:
        if not msg.id:
            continue
        have = vi.get(msg.id)
        strings = (have.string if isinstance(have.string, (tuple, list)) else (have.string,)
                   ) if have is not None else ()
        if have is None or have.fuzzy or not strings or not all(s for s in strings):
            where = f"{msg.locations[0][0]}:{msg.locations[0][1]}" if msg.locations else "?"
            out.append((msg.id, where))
    return sorted(out, key=lambda x: x[1])


def po_entry(msgid: str | tuple[str, ...]) -> str:
    """A ``.po`` entry to add for ``msgid`` (the translation left to write)."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po
    import io

    cat = Catalog(locale="vi", domain=i18n.DOMAIN)
    cat.add(msgid, ("", "") if isinstance(msgid, tuple) else "")
    buf = io.BytesIO()
    write_po(buf, cat, omit_header=True, width=0)
    return buf.getvalue().decode("utf-8").strip()


def update() -> int:
    """Merge the extracted strings into the Vietnamese ``.po``; returns how many are left
    untranslated."""
    from babel.messages.pofile import write_po

    template = extract_catalog()
    vi = read_vi()
    vi.update(template, no_fuzzy_matching=True)
    with i18n.po_path("vi").open("wb") as fh:
        write_po(fh, vi, width=100, sort_by_file=False, include_previous=False)
    return len(missing(template, read_vi()))


def _key(msgid: str | tuple[str, ...]) -> str:
    return "\x00".join(msgid) if isinstance(msgid, tuple) else msgid


def write_todo(path: Path) -> int:
    """Write the untranslated msgids to ``path`` as JSON (values empty); returns how many."""
    import json

    todo = {_key(msgid): ([""] if isinstance(msgid, tuple) else "") for msgid, _ in missing()}
    path.write_text(json.dumps(todo, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return len(todo)


def fill(path: Path) -> int:
    """Put the non-empty translations of the JSON file ``path`` into the Vietnamese ``.po``
    (msgids the catalog does not hold are skipped: run ``update`` first); returns how many were
    written. A plural's value is a list (Vietnamese has one form)."""
    import json

    from babel.messages.pofile import write_po

    data = json.loads(path.read_text(encoding="utf-8"))
    vi = read_vi()
    done = 0
    for key, value in data.items():
        msgid: str | tuple[str, ...] = tuple(key.split("\x00")) if "\x00" in key else key
        msg = vi.get(msgid)
        if msg is None or not value or (isinstance(value, list) and not all(value)):
            continue
        msg.string = tuple(value) if isinstance(msgid, tuple) else value
        msg.flags.discard("fuzzy")
        done += 1
    with i18n.po_path("vi").open("wb") as fh:
        write_po(fh, vi, width=100, sort_by_file=False, include_previous=False)
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cmd = args[0] if args else "check"
    if cmd not in ("check", "update", "todo", "fill") or (cmd in ("todo", "fill")
                                                          and len(args) != 2):
        print("usage: python -m outreach.i18n_tools check|update|todo FILE.json|fill FILE.json",
              file=sys.stderr)
        return 2
    if cmd == "update":
        update()
    if cmd == "todo":
        print(f"{write_todo(Path(args[1]))} strings to translate in {args[1]}", file=sys.stderr)
        return 0
    if cmd == "fill":
        print(f"{fill(Path(args[1]))} translations written", file=sys.stderr)
    todo = missing()
    for msgid, where in todo:
        print(f"#: {where}\n{po_entry(msgid)}\n")
    print(f"{len(todo)} strings without a Vietnamese translation in {i18n.po_path('vi')}",
          file=sys.stderr)
    return 1 if todo else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
