"""The interface in Vietnamese and English: a complete catalog, the language chosen from
--lang / OUTREACH_LANG / the locale, formats, every command in both languages."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from outreach import i18n, i18n_tools
from outreach.cli import main

ROOT = Path(__file__).resolve().parent.parent
CID = "cantho-2024-pcmbn"


def test_every_message_has_a_vietnamese_translation() -> None:
    """Extracted with Babel from outreach/ (``_()``, ``ngettext()``, ``N_()``, click help):
    every msgid needs a non-empty, non-fuzzy Vietnamese translation. On failure the message
    is the list of entries to add to outreach/locale/vi/LC_MESSAGES/outreach.po (or run
    ``python -m outreach.i18n_tools update`` and fill in the empty msgstr)."""
    todo = i18n_tools.missing()
    entries = "\n\n".join(f"#: {where}\n{i18n_tools.po_entry(msgid)}" for msgid, where in todo)
    assert not todo, (f"{len(todo)} messages have no Vietnamese translation; add to "
                      f"{i18n.po_path('vi')}:\n\n{entries}")


def test_translations_made_on_a_branch_fill_the_catalog_from_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fill FILE.json``: a string and a plural written into a copy of the catalog; an empty
    value and a msgid the catalog lacks are skipped; the result reads back."""
    import json
    import shutil

    real = i18n.po_path("vi")
    before = real.read_bytes()
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale)
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    done = tmp_path / "tr.json"
    done.write_text(json.dumps({
        "rows read": "DÒNG ĐÃ ĐỌC (thử)",
        "{n} row\x00{n} rows": ["{n} DÒNG (thử)"],
        "a msgid nobody extracted": "bỏ qua",
        "recipients": "",
    }, ensure_ascii=False), encoding="utf-8")
    assert i18n_tools.fill(done) == 2
    vi = i18n_tools.read_vi()
    assert vi.get("rows read").string == "DÒNG ĐÃ ĐỌC (thử)"
    assert tuple(vi.get(("{n} row", "{n} rows")).string) == ("{n} DÒNG (thử)",)
    assert vi.get("a msgid nobody extracted") is None
    assert vi.get("recipients").string  # an empty value leaves the translation as it was
    assert real.read_bytes() == before  # the shipped catalog untouched


def test_the_completeness_check_names_what_is_missing(tmp_path: Path) -> None:
    """The check itself: a new message in a module is reported with its file and line, and the
    entry to add is a valid .po entry with an empty msgstr."""
    from babel.messages.catalog import Catalog

    src = tmp_path / "pkg"
    src.mkdir()
    (src / "mod.py").write_text(
        "from outreach.i18n import _, ngettext\n"
        "import click\n\n"
        "@click.command()\n"
        "@click.option('--x', help='An option nobody translated.')\n"
        "def cmd(x):\n"
        "    '''A command nobody translated.'''\n"
        "    print(_('rows read'))\n"
        "    print(_('a new message {n}').format(n=1))\n"
        "    print(ngettext('{n} new thing', '{n} new things', 2))\n", encoding="utf-8")
    template = i18n_tools.extract_catalog(src)
    todo = dict((m if isinstance(m, str) else m[0], w) for m, w in
                i18n_tools.missing(template, i18n_tools.read_vi()))
    assert todo == {"An option nobody translated.": "outreach/mod.py:5",
                    "A command nobody translated.": "outreach/mod.py:6",
                    "a new message {n}": "outreach/mod.py:9",
                    "{n} new thing": "outreach/mod.py:10"}
    entry = i18n_tools.po_entry(("{n} new thing", "{n} new things"))
    assert entry.splitlines() == ['#, python-brace-format', 'msgid "{n} new thing"',
                                  'msgid_plural "{n} new things"', 'msgstr[0] ""']
    assert isinstance(template, Catalog) and "rows read" in template  # translated: not listed


@pytest.mark.parametrize("env, expected", [
    ({}, "vi"), ({"LANG": "C"}, "vi"), ({"LANG": "POSIX"}, "vi"), ({"LANG": "C.UTF-8"}, "vi"),
    ({"LANG": "vi_VN.UTF-8"}, "vi"), ({"LANG": "en_US.UTF-8"}, "en"), ({"LANG": "fr_FR"}, "en"),
    ({"LC_ALL": "en_GB.UTF-8", "LANG": "vi_VN"}, "en"), ({"LC_ALL": "", "LANG": "vi_VN"}, "vi"),
    ({"LC_MESSAGES": "vi_VN.UTF-8", "LANG": "en_US"}, "vi"),
    ({"OUTREACH_LANG": "en", "LANG": "vi_VN.UTF-8"}, "en"),
    ({"OUTREACH_LANG": "vi_VN", "LANG": "en_US.UTF-8"}, "vi"),
])
def test_language_from_the_environment(env: dict[str, str], expected: str) -> None:
    assert i18n.resolve(None, env) == expected


def test_lang_option_beats_the_environment_and_bad_codes_are_refused() -> None:
    assert i18n.resolve("en", {"OUTREACH_LANG": "vi"}) == "en"
    assert i18n.resolve("VI", {"LANG": "en_US"}) == "vi"
    with pytest.raises(i18n.LanguageError, match="vi or en"):
        i18n.resolve("fr", {})
    with pytest.raises(i18n.LanguageError, match="OUTREACH_LANG='de'"):
        i18n.resolve(None, {"OUTREACH_LANG": "de"})
    r = CliRunner().invoke(main, ["--lang", "fr", "db", "current"],
                           env={"LANG": "en_US.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""})
    assert r.exit_code == 2
    assert "Error: --lang='fr': the interface speaks vi (Vietnamese) or en (English)" in r.output
    # the environment's value is named as such, in the locale's language (Vietnamese: unset)
    r = CliRunner().invoke(main, ["db", "current"], env={"OUTREACH_LANG": "fr", "LANG": "",
                                                         "LC_ALL": "", "LC_MESSAGES": ""})
    assert r.exit_code == 2
    assert ("Lỗi: OUTREACH_LANG='fr': giao diện chỉ có tiếng Việt (vi) hoặc tiếng Anh (en)"
            in r.output)


def test_version_and_did_you_mean_in_each_language() -> None:
    from outreach import __version__

    r = CliRunner().invoke(main, ["--lang", "vi", "--version"])
    assert r.exit_code == 0 and r.output == f"outreach, phiên bản {__version__}\n"
    r = CliRunner().invoke(main, ["--lang", "en", "--version"])
    assert r.exit_code == 0 and r.output == f"outreach, version {__version__}\n"
    r = CliRunner().invoke(main, ["--lang", "vi", "report", "x", "--ou"])
    assert r.exit_code == 2
    assert "Không có tùy chọn '--ou'. (Có phải ý bạn là: '--org', '--out', '--to'?)" in r.output
    r = CliRunner().invoke(main, ["--lang", "en", "report", "x", "--ou"])
    assert "(Did you mean one of: '--org', '--out', '--to'?)" in r.output


def test_numbers_times_and_plurals_in_each_language() -> None:
    moment = dt.datetime(2024, 7, 30, 1, 0, tzinfo=dt.timezone.utc)  # 08:00 in Vietnam
    i18n.set_language("vi")
    try:
        assert i18n.number(1234567) == "1.234.567"
        assert i18n.number(12.5, 1) == "12,5"
        assert i18n.percent(0.973) == "97,3%"
        assert i18n.when(moment) == "08:00 ngày 30/07/2024"
        assert i18n.day(dt.date(2024, 7, 30)) == "30/07/2024"
        assert i18n._("rows read") == "số dòng đã đọc"
        assert i18n.ngettext("{n} row", "{n} rows", 1) == "{n} dòng"
        assert i18n.ngettext("{n} row", "{n} rows", 2) == "{n} dòng"
        # the carrier key of numbers whose prefix names no carrier (seen in a launch plan)
        assert i18n.carrier_label("unknown") == "không rõ nhà mạng"
        assert i18n.carrier_label("Viettel") == "Viettel"
    finally:
        i18n.set_language("en")
    assert i18n.carrier_label("unknown") == "unknown"
    assert i18n.number(1234567) == "1,234,567"
    assert i18n.percent(0.973) == "97.3%"
    assert i18n.when(moment) == "08:00 30/07/2024"
    assert i18n.ngettext("{n} row", "{n} rows", 1) == "{n} row"
    assert i18n.ngettext("{n} row", "{n} rows", 2) == "{n} rows"
    assert i18n._("rows read") == "rows read"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _commands(cmd, prefix + (name,))
        else:
            out.append(prefix + (name,))
    return out


def test_every_command_helps_in_vietnamese_and_english() -> None:
    """Each command's --help in both languages: click's own words and the command's text are
    translated in vi, untouched in en; the English help never leaks into the Vietnamese."""
    runner = CliRunner()
    commands = _commands(main)
    assert len(commands) > 40
    for path in commands:
        vi = runner.invoke(main, ["--lang", "vi", *path, "--help"])
        en = runner.invoke(main, ["--lang", "en", *path, "--help"])
        assert vi.exit_code == 0 and en.exit_code == 0, (path, vi.output, en.output)
        assert vi.output.startswith("Cách dùng: ") and "Tùy chọn:" in vi.output, path
        assert "Hiện hướng dẫn này rồi thoát." in vi.output, path
        assert en.output.startswith("Usage: ") and "Show this message and exit." in en.output
        assert vi.output != en.output, path
        cmd = main
        for name in path:
            cmd = cmd.commands[name]  # type: ignore[attr-defined]
        original = getattr(cmd, "_i18n_help", None) or cmd.help
        if original:
            key = i18n_tools.help_key(original)
            i18n.set_language("vi")
            translated = i18n._(key)
            i18n.set_language("en")
            assert translated != key, path
            assert " ".join(key.split()[:6]) in " ".join(en.output.split()), path
            assert " ".join(translated.split()[:6]) in " ".join(vi.output.split()), path
    # OUTREACH_LANG alone chooses too, and the locale when nothing else is set
    r = runner.invoke(main, ["report", "--help"], env={"OUTREACH_LANG": "vi"})
    assert "Ai đã nhận được tin và ai chưa" in r.output
    r = runner.invoke(main, ["report", "--help"], env={"OUTREACH_LANG": "", "LANG": "vi_VN.UTF-8",
                                                        "LC_ALL": ""})
    assert "Ai đã nhận được tin và ai chưa" in r.output
    r = runner.invoke(main, ["report", "--help"], env={"OUTREACH_LANG": "", "LANG": "en_US.UTF-8",
                                                        "LC_ALL": ""})
    assert "Who got the message and who did not" in r.output


def _run(*args: str, lang: str = "en", input: str | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--lang", lang, "--wide", *args], input=input)
    return r.exit_code, " ".join(r.stdout.split()), " ".join(r.stderr.split())


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's main job, launched once (outbox)."""
    monkeypatch.chdir(ROOT)
    code, out, err = _run("campaign", "launch", CID, "--no-progress")
    assert code == 0, err


def test_the_main_commands_speak_vietnamese_and_english(launched: None, tmp_path: Path) -> None:
    """Every operator-facing command of the main job, in each language, with its real figures
    in the language's number format."""
    cases = [
        (("report", CID), "Tin nhắn theo quận/huyện", "Deliveries by district", "2.098", "2,098"),
        (("runs", "list", CID), "hoàn thành", "completed", "2.098", "2,098"),
        (("deliveries", "list", CID, "--limit", "3"), "Tin nhắn của cantho-2024-pcmbn: 2.098",
         "Deliveries of cantho-2024-pcmbn: 2,098", "đã gửi", "sent"),
        (("recipients", "list", "--limit", "2"), "Người nhận (2)", "Recipients (2)",
         "đang nhận tin", "active"),
        (("optout", "list"), "Danh sách từ chối nhận tin (0)", "Suppression list (0)", "", ""),
        (("audit", "list", "--limit", "2"), "Nhật ký thao tác: 2 mục", "Audit log: 2 entries",
         "thao tác", "action"),
        (("db", "current"), "cơ sở dữ liệu:", "database:", "mới nhất:", "newest:"),
        (("campaign", "launch", CID, "--no-progress"), "Không có gì mới để gửi",
         "Nothing new to send", "người nhận sẽ được gửi", "recipients to send"),
        (("campaign", "check", CID), "CHẠY THỬ, không gửi tin nào", "DRY RUN, nothing sent",
         "tổng số phần tin", "segments in all"),
    ]
    for args, vi_text, en_text, vi_more, en_more in cases:
        code_vi, out_vi, err_vi = _run(*args, lang="vi")
        code_en, out_en, err_en = _run(*args, lang="en")
        assert code_vi == 0 and code_en == 0, (args, err_vi, err_en)
        assert vi_text in out_vi and vi_more in out_vi, (args, out_vi)
        assert en_text in out_en and en_more in out_en, (args, out_en)
        assert out_vi != out_en, args
    code, out, _ = _run("optout", "add", "0905550001", "0905 550 002", lang="vi")
    assert code == 0 and "đã thêm 2 số vào danh sách từ chối nhận tin (0 số đã có)" in out
    code, out, _ = _run("optout", "add", "0905550003", lang="en")
    assert code == 0 and "1 number added to the suppression list (0 already there)" in out
    code, out, _ = _run("optout", "remove", "0905550001", lang="vi")
    assert code == 0 and "đã xóa 1 số" in out
    code, out, _ = _run("optout", "remove", "0905550002", "0905550003", lang="en")
    assert code == 0 and "2 numbers removed" in out


def test_exports_speak_the_language(launched: None, tmp_path: Path) -> None:
    """XLSX sheets and columns, CSV headings: Vietnamese in vi, the column names in en."""
    from openpyxl import load_workbook

    vi, en = tmp_path / "vi.xlsx", tmp_path / "en.xlsx"
    assert _run("report", CID, "--format", "xlsx", "--out", str(vi), lang="vi")[0] == 0
    assert _run("report", CID, "--format", "xlsx", "--out", str(en), lang="en")[0] == 0
    wb_vi, wb_en = load_workbook(vi), load_workbook(en)
    assert wb_vi.sheetnames[:3] == ["Tổng hợp", "theo trạng thái", "theo quận huyện"]
    assert wb_en.sheetnames[:3] == ["summary", "status", "district"]
    assert [c.value for c in wb_vi["Tổng hợp"][1]] == ["chỉ tiêu", "giá trị"]
    figures = {r[0].value: r[1].value for r in wb_vi["Tổng hợp"].iter_rows(min_row=2)}
    assert figures["người nhận"] == 2098 and figures["chiến dịch"] == CID
    heads = [c.value for c in wb_vi["theo quận huyện"][1]]
    assert heads[:3] == ["mục", "mục con", "đang chờ"] and "tỷ lệ đến" in heads
    assert [c.value for c in wb_en["district"][1]][:3] == ["key", "subkey", "queued"]
    code, out, _ = _run("report", CID, "--format", "csv", lang="vi")
    assert code == 0 and out.startswith("quận/huyện,đang chờ,đang gửi,đã gửi")
    code, out, _ = _run("report", CID, "--format", "csv", lang="en")
    assert out.startswith("district,queued,sending,sent")
    code, out, _ = _run("report", CID, lang="vi")
    # first and last send as a Vietnamese official writes a time
    assert " ngày " in out.split("gửi đầu tiên", 1)[1][:30]
