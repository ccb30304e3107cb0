"""Every ``--help`` of the command tree in Vietnamese (no English prose, no English
placeholders) and in English with ``--lang en`` (click's words and placeholders unchanged)."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from outreach import i18n
from outreach.cli import main
from tests.helpers import english_words

#: click's English placeholders and the words of its help extras; none may remain in
#: Vietnamese (``URL`` and the option values such as ``[table|json]`` are not English prose).
ENGLISH_PLACEHOLDERS = re.compile(
    r"\b(OPTIONS|COMMAND\d?|ARGS|TEXT|INTEGER|FLOAT|BOOLEAN|PATH|FILE|FILES|FILENAME|DIRECTORY|"
    r"RANGE|CAMPAIGN|CAMPAIGN_ID|FILE_OR_ID|CAMPAIGN_FILE_OR_ID|DAYS|SECONDS|BYTES|"
    r"DELIVERY_IDS|HEADER|ADDRESS|ID|KEY|VALUE|NAME|NUMBERS|PHONE|OUT|USERNAME|VAR)\b"
    r"|\[(required|default: [^\]]*|env var: [^\]]*)\]|\bdefault:|\brequired\b")


#: Placeholders that read the same in Vietnamese.
KEPT_PLACEHOLDERS = {"URL"}


def _tree(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every group and command under ``group`` (``()`` is the main group)."""
    out = [prefix]
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _tree(cmd, prefix + (name,))
        else:
            out.append(prefix + (name,))
    return out


def _help(lang: str, path: tuple[str, ...]) -> str:
    r = CliRunner().invoke(main, ["--lang", lang, *path, "--help"], prog_name="outreach")
    assert r.exit_code == 0, (path, r.output)
    return r.output


def _usage_and_rows(text: str) -> str:
    """The usage line and the option/argument column of a help page (where the placeholders
    are), without the prose."""
    lines = []
    in_options = False
    for line in text.splitlines():
        if line.startswith(("Usage:", "Cách dùng:")):
            lines.append(line)
        elif line and not line.startswith(" "):
            in_options = line.strip() in ("Options:", "Tùy chọn:")
        elif in_options and re.match(r"\s{2}-", line):
            lines.append(re.split(r"\s{2,}", line.strip())[0])
    return "\n".join(lines)


def _prose(text: str) -> str:
    """A help page without what are names, not prose: the command path of the usage line and
    the names in the list of subcommands (``list``, ``campaign``); lines wrapped by click are
    joined again."""
    out = []
    in_commands = False
    for line in text.splitlines():
        if line.startswith(("Usage:", "Cách dùng:")):
            line = " ".join(w for w in line.split() if not re.fullmatch(r"[a-z][a-z-]*", w))
        elif line.strip() in ("Commands:", "Lệnh:"):
            in_commands = True
        elif in_commands and re.match(r"\s{2}\S", line):
            line = re.sub(r"^\s{2}[a-z][a-z0-9-]*", "", line)
        elif line and not line.startswith(" "):
            in_commands = False
        out.append(line)
    # one paragraph per line, as before click wrapped it ("--dry-" + "run" is one word)
    text = re.sub(r"-\n\s+", "-", "\n".join(out))
    return re.sub(r"(?<=\S)\n {2,}(?=\S)", " ", text)


def test_the_tree_is_walked_whole() -> None:
    paths = _tree(main)
    assert len(paths) > 60
    for wanted in [(), ("campaign", "launch"), ("gateways", "zalo", "token-status"),
                   ("webhooks", "serve"), ("web", "serve"), ("users", "add")]:
        assert wanted in paths


@pytest.mark.parametrize("path", _tree(main),
                         ids=lambda p: " ".join(p) or "outreach")
def test_help_in_vietnamese_has_no_english(path: tuple[str, ...]) -> None:
    text = _help("vi", path)
    assert text.startswith("Cách dùng: outreach"), text
    assert "[TÙY_CHỌN]" in text.splitlines()[0]
    assert english_words(_prose(text)) == [], (path, text)
    assert ENGLISH_PLACEHOLDERS.findall(_prose(text)) == [], (path, text)
    # any placeholder still in ASCII capitals (a new argument without its metavar|WORD entry)
    ascii_caps = [w for w in re.findall(r"\w+", _usage_and_rows(text))
                  if re.fullmatch(r"[A-Z][A-Z0-9_]+", w) and w not in KEPT_PLACEHOLDERS]
    assert ascii_caps == [], (path, text)


@pytest.mark.parametrize("path", _tree(main), ids=lambda p: " ".join(p) or "outreach")
def test_help_in_english_is_unchanged(path: tuple[str, ...]) -> None:
    text = _help("en", path)
    assert text.startswith("Usage: outreach") and "[OPTIONS]" in text.splitlines()[0]
    assert "Options:" in text and "Show this message and exit." in text
    rows = _usage_and_rows(text)
    assert "--help" in rows.splitlines(), rows
    assert not re.search(r"[ăâđêôơưàảãáạ]", rows, re.I), (path, text)


def test_placeholders_in_each_language() -> None:
    """The placeholders of the usage line and of options, word for word."""
    vi, en = _help("vi", ()), _help("en", ())
    assert vi.splitlines()[0] == "Cách dùng: outreach [TÙY_CHỌN] LỆNH [THAM_SỐ]..."
    assert en.splitlines()[0] == "Usage: outreach [OPTIONS] COMMAND [ARGS]..."
    assert "--operator VĂN_BẢN" in vi and "--operator TEXT" in en
    assert "--database-url URL" in vi and "--lang vi|en" in vi
    vi, en = _help("vi", ("campaign", "launch")), _help("en", ("campaign", "launch"))
    assert vi.splitlines()[0] == "Cách dùng: outreach campaign launch [TÙY_CHỌN] TỆP_HOẶC_MÃ"
    assert en.splitlines()[0] == "Usage: outreach campaign launch [OPTIONS] FILE_OR_ID"
    assert "--reject-file TỆP" in vi and "--format [table|json]" in vi
    vi = _help("vi", ("web", "serve"))
    assert "--port SỐ_NGUYÊN" in vi and "[mặc định: 8000; 1<=x<=65535]" in vi
    assert "--trusted-header TÊN_TIÊU_ĐỀ" in vi
    assert "--expires-in SỐ_NGUYÊN" in _help("vi", ("gateways", "zalo", "set-token"))
    assert "--older-than SỐ_NGÀY" in _help("vi", ("privacy", "purge"))
    assert "--port INTEGER RANGE" in _help("en", ("web", "serve"))


def test_an_error_names_the_argument_in_the_language() -> None:
    r = CliRunner().invoke(main, ["--lang", "vi", "campaign", "launch"], prog_name="outreach")
    assert r.exit_code == 2 and "Thiếu tham số 'TỆP_HOẶC_MÃ'" in r.output
    r = CliRunner().invoke(main, ["--lang", "en", "campaign", "launch"], prog_name="outreach")
    assert r.exit_code == 2 and "Missing argument 'FILE_OR_ID'" in r.output


def test_metavar_words() -> None:
    i18n.set_language("vi")
    try:
        assert i18n.metavar("[CAMPAIGN_ID]...") == "[MÃ_CHIẾN_DỊCH]..."
        assert i18n.metavar("KEY=VALUE") == "KHÓA=GIÁ_TRỊ"
        assert i18n.metavar("FLOAT RANGE") == "SỐ"
        assert i18n.metavar("[table|json]") == "[table|json]"
        assert i18n.metavar("URL") == "URL"
    finally:
        i18n.set_language("en")
    assert i18n.metavar("[CAMPAIGN_ID]...") == "[CAMPAIGN_ID]..."


@pytest.mark.parametrize("args, vi, en", [
    (["web", "serve", "--port", "abc"], "'abc' không phải số nguyên hợp lệ.",
     "'abc' is not a valid integer range."),
    (["web", "serve", "--port", "0"], "0 không nằm trong khoảng 1<=x<=65535.",
     "0 is not in the range 1<=x<=65535."),
    (["recipients", "import", "/nonexistent.csv"],
     "Giá trị không hợp lệ cho 'CÁC_TỆP...': Tệp '/nonexistent.csv' không tồn tại.",
     "Invalid value for 'FILES...': File '/nonexistent.csv' does not exist."),
])
def test_click_type_errors_in_each_language(args: list[str], vi: str, en: str) -> None:
    """click's type names in its errors (integer, File) read in the language."""
    r = CliRunner().invoke(main, ["--lang", "vi", *args], prog_name="outreach")
    assert r.exit_code == 2 and vi in r.output, r.output
    assert english_words(_prose(r.output)) == [], r.output
    r = CliRunner().invoke(main, ["--lang", "en", *args], prog_name="outreach")
    assert r.exit_code == 2 and en in r.output, r.output
