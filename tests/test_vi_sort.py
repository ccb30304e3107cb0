"""Place names in Vietnamese alphabetical order (outreach.i18n.vi_sort_key): in the key itself,
and in the report's breakdowns, tables and official report rows."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from outreach.cli import main
from outreach.i18n import vi_sort_key, vi_sorted_items
from tests.helpers import numbers, write_campaign

#: The districts of Cần Thơ (before the 2025 reform), in Vietnamese alphabetical order.
CANTHO_DISTRICTS = ["Bình Thủy", "Cái Răng", "Cờ Đỏ", "Ninh Kiều", "Ô Môn", "Phong Điền",
                    "Thốt Nốt", "Thới Lai", "Vĩnh Thạnh"]


def test_cantho_districts_in_vietnamese_order() -> None:
    shuffled = ["Vĩnh Thạnh", "Ô Môn", "Thới Lai", "Ninh Kiều", "Cờ Đỏ", "Thốt Nốt",
                "Phong Điền", "Cái Răng", "Bình Thủy"]
    assert sorted(shuffled, key=vi_sort_key) == CANTHO_DISTRICTS
    # code point order gets it wrong: "Ô Môn" after "Vĩnh Thạnh", "Thới" before "Thốt"
    assert sorted(shuffled)[-1] == "Ô Môn"


def test_cantho_communes_with_d_and_dd() -> None:
    """Đ is its own letter after D (code point order puts it after Z); ă â after a, ô ơ after
    o, ư after u."""
    expected = ["An Bình", "Định Môn", "Đông Bình", "Đông Thuận", "Giai Xuân", "Long Tuyền",
                "Mỹ Khánh", "Nhơn Ái", "Nhơn Nghĩa", "Tân Thới", "Thới An Đông", "Trà An",
                "Trà Nóc", "Trường Lạc", "Trường Long"]
    assert sorted(reversed(expected), key=vi_sort_key) == expected
    assert sorted(["Zê", "Đa", "Dung", "Ea"], key=vi_sort_key) == ["Dung", "Đa", "Ea", "Zê"]
    assert sorted(["ư", "u", "ơ", "ô", "o", "â", "ă", "a", "ê", "e"], key=vi_sort_key) == [
        "a", "ă", "â", "e", "ê", "o", "ô", "ơ", "u", "ư"]


def test_tones_are_second_and_case_third() -> None:
    # ngang, huyền, hỏi, ngã, sắc, nặng
    assert sorted(["mạ", "má", "mã", "mả", "mà", "ma"], key=vi_sort_key) == [
        "ma", "mà", "mả", "mã", "má", "mạ"]
    # the letters first: a tone never outranks a later letter
    assert sorted(["mac", "mạ"], key=vi_sort_key) == ["mạ", "mac"]
    assert sorted(["An", "an"], key=vi_sort_key) == ["an", "An"]
    # NFD and NFC sort alike; a space before any letter ("Ô Môn" before "Ôn")
    import unicodedata

    assert vi_sort_key(unicodedata.normalize("NFD", "Ô Môn"))[:3] == vi_sort_key("Ô Môn")[:3]
    assert sorted(["Ôn", "Ô Môn"], key=vi_sort_key) == ["Ô Môn", "Ôn"]
    assert vi_sort_key(None) == vi_sort_key("")


def test_vi_sorted_items_unknown_last() -> None:
    got = vi_sorted_items({"(không rõ)": 1, "Ô Môn": 2, "Cái Răng": 3}, last="(không rõ)")
    assert [k for k, _ in got] == ["Cái Răng", "Ô Môn", "(không rõ)"]


def test_report_breakdowns_in_vietnamese_order(tmp_path: Path) -> None:
    """`report` (JSON, table) lists districts and wards alphabetically in Vietnamese."""
    toml = write_campaign(tmp_path, n=len(CANTHO_DISTRICTS))
    wards = {"Ô Môn": ["Trường Lạc", "Châu Văn Liêm"], "Thới Lai": ["Đông Thuận", "Định Môn"]}
    rows = ["phone,name,district,ward"]
    order = list(reversed(CANTHO_DISTRICTS))
    phones = numbers(len(order) + 2)
    for i, d in enumerate(order):
        rows.append(f"{phones[i]},Người {i},{d},{wards.get(d, ['Trung tâm'])[0]}")
    rows.append(f"{phones[-2]},Người A,Ô Môn,Châu Văn Liêm")
    rows.append(f"{phones[-1]},Người B,Thới Lai,Định Môn")
    (tmp_path / "test-campaign-list.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'o.db'}"
    runner = CliRunner()
    r = runner.invoke(main, ["--lang", "vi", "--database-url", url, "campaign", "launch",
                             str(toml), "--yes"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["--lang", "vi", "--database-url", url, "report", "test-campaign",
                             "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert list(data["by_district"]) == CANTHO_DISTRICTS
    assert list(data["by_ward"]) == CANTHO_DISTRICTS
    assert list(data["by_ward"]["Ô Môn"]) == ["Châu Văn Liêm", "Trường Lạc"]
    assert list(data["by_ward"]["Thới Lai"]) == ["Định Môn", "Đông Thuận"]
    r = runner.invoke(main, ["--lang", "vi", "--wide", "--database-url", url, "report",
                             "test-campaign", "--by", "district"])
    assert r.exit_code == 0, r.output
    pos = [r.stdout.index(f"\n {d} ") for d in CANTHO_DISTRICTS]
    assert pos == sorted(pos), r.stdout


def test_official_report_rows_in_vietnamese_order() -> None:
    from outreach.reporting import official, reports

    by = {d: {"delivered": 1} for d in reversed(CANTHO_DISTRICTS)}
    by[reports.UNKNOWN_DISTRICT] = {"failed": 1}
    rows = official._rows(by, unknown_last=reports.UNKNOWN_DISTRICT)
    assert [r["name"] for r in rows] == CANTHO_DISTRICTS + [reports.UNKNOWN_DISTRICT]
