"""Tests for outreach.input.text and the `message inspect` command."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from outreach.cli.message import message
from outreach.input.text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MessageAnalysis,
    MissingFieldError,
    TemplateError,
    analyse,
    estimate_cost,
    gsm7_septets,
    gsm_safe,
    is_gsm7,
    nfc,
    placeholders,
    render,
    text_sha256,
    unaccent,
    utf16_units,
)

CASES: list[dict[str, Any]] = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "segments.jsonl").read_text("utf-8").splitlines()
    if line.strip()
]

PLAN = (
    "Toàn dân tích cực tham gia phòng, chống mua bán người. Khi phát hiện dấu hiệu liên quan "
    "đến mua bán người hãy thông báo ngay cho cơ quan Công an nơi gần nhất hoặc Tổng đài quốc "
    "gia 111 để được tư vấn, hỗ trợ, hướng dẫn kịp thời"
)
DONT = "Don’t forget: wash hands often. Call 1900 1234 for free advice today, it’s free."


def units_of(part: str, encoding: str) -> int:
    return gsm7_septets(part) if encoding == "GSM-7" else utf16_units(part)


# --- field cases -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[f"row{i}" for i in range(len(CASES))])
def test_segments_cases(case: dict[str, Any]) -> None:
    a = analyse(case["text"], unaccented=case.get("option") == "unaccented")
    assert a.encoding == case["encoding"]
    assert a.segments == case["segments"]
    if "ucs2_forcing" in case:
        assert a.ucs2_characters == case["ucs2_forcing"]
    assert len(a.parts) == a.segments
    assert "".join(a.parts) == a.text


def test_cases_file_has_nfd_rows() -> None:
    # The copy must keep the decomposed rows byte for byte (they are the point of those cases).
    assert sum(not unicodedata.is_normalized("NFC", c["text"]) for c in CASES) == 2


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("1" * 160, "GSM-7", 1),
        ("1" * 161, "GSM-7", 2),
        ("1" * 306, "GSM-7", 2),
        ("1" * 307, "GSM-7", 3),
        ("{" + "1" * 158, "GSM-7", 1),
        ("{" + "1" * 159, "GSM-7", 2),
        ("€" * 80, "GSM-7", 1),
        ("€" * 81, "GSM-7", 2),
        ("😜" + "1" * 68, "UCS-2", 1),
        ("😜" + "1" * 69, "UCS-2", 2),
        ("1" * 152 + "€" + "1" * 153, "GSM-7", 3),
        ("Xin chào", "GSM-7", 1),
    ],
)
def test_twilio_vectors(text: str, encoding: str, segments: int) -> None:
    a = analyse(text)
    assert (a.encoding, a.segments) == (encoding, segments)


def test_combining_grave_is_billed_as_nfc() -> None:
    # Twilio's calculator (no normalisation) says UCS-2 for "a"+U+0300; we send and bill NFC "à".
    a = analyse("a\u0300")
    assert a.text == "à"
    assert (a.encoding, a.units, a.segments) == ("GSM-7", 1, 1)


# --- the plan's message ----------------------------------------------------------------------


def test_plan_message_nfc() -> None:
    a = analyse(PLAN)
    assert a.characters == 227
    assert a.units == 227
    assert (a.encoding, a.segments, a.per_segment) == ("UCS-2", 4, 67)
    assert [len(p) for p in a.parts] == [67, 67, 67, 26]


def test_plan_message_nfd_billed_as_nfc() -> None:
    nfd = unicodedata.normalize("NFD", PLAN)
    assert utf16_units(nfd) == 290  # raw: would be 5 parts of 67 if not normalised
    a = analyse(nfd)
    assert a.text == PLAN
    assert (a.encoding, a.units, a.segments) == ("UCS-2", 227, 4)


def test_plan_message_unaccented() -> None:
    a = analyse(PLAN, unaccented=True)
    assert a.text.startswith("Toan dan tich cuc tham gia phong, chong mua ban nguoi.")
    assert "den mua ban" in a.text and "Tong dai quoc gia 111 de duoc tu van" in a.text
    assert (a.encoding, a.characters, a.units) == ("GSM-7", 227, 227)
    assert (a.segments, a.per_segment) == (2, 153)
    assert [len(p) for p in a.parts] == [153, 74]
    assert a.ucs2_characters == []


# --- boundaries ------------------------------------------------------------------------------


def test_escape_pair_never_split() -> None:
    a = analyse("1" * 152 + "€" + "1" * 153)
    assert a.encoding == "GSM-7"
    assert a.units == 307
    assert a.segments == 3
    assert a.parts == ["1" * 152, "€" + "1" * 151, "11"]
    assert [gsm7_septets(p) for p in a.parts] == [152, 153, 2]


def test_surrogate_pair_never_split() -> None:
    a = analyse("1" * 66 + "😜" + "1" * 10)
    assert a.encoding == "UCS-2"
    assert a.ucs2_characters == ["😜"]
    assert a.units == 78
    assert a.parts == ["1" * 66, "😜" + "1" * 10]
    assert [utf16_units(p) for p in a.parts] == [66, 12]
    assert a.segments == 2


def test_empty_text() -> None:
    a = analyse("")
    assert (a.encoding, a.units, a.segments, a.parts) == ("GSM-7", 0, 0, [])


# --- tables ----------------------------------------------------------------------------------


def test_gsm_tables() -> None:
    assert len(GSM7_BASIC) == 127
    assert set(GSM7_EXTENSION) == set("\f^{}\\[~]|€")
    assert not is_gsm7("`")
    assert is_gsm7("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà")
    assert gsm7_septets("a{}€") == 7
    assert analyse("`").encoding == "UCS-2"
    assert analyse("^" * 80).segments == 1
    assert analyse("^" * 81).segments == 2
    with pytest.raises(ValueError):
        gsm7_septets("ờ")


def test_only_some_vietnamese_letters_are_gsm() -> None:
    assert is_gsm7("àèéìòùÉ")
    for ch in "áảãạăắằẳẵặâấầẩẫậđÀÈÌÒÙÁêơưĐ":
        assert not is_gsm7(ch), ch


# --- gsm_safe / unaccent ---------------------------------------------------------------------


def test_gsm_safe_keeps_diacritics() -> None:
    s = "Đi khám sớm – “ngay”"
    assert gsm_safe(s) == 'Đi khám sớm - "ngay"'
    a = analyse(s, gsm_safe=True)
    assert a.text == 'Đi khám sớm - "ngay"'
    assert a.encoding == "UCS-2"
    assert a.ucs2_characters == ["Đ", "á", "ớ"]
    assert analyse(s).ucs2_characters == ["Đ", "á", "ớ", "–", "“", "”"]


def test_gsm_safe_dont_forget() -> None:
    a = analyse(DONT, gsm_safe=True)
    assert a.text == DONT.replace("’", "'")
    assert (a.encoding, a.segments, a.units) == ("GSM-7", 1, 80)
    raw = analyse(DONT)
    assert raw.ucs2_characters == ["’"]


def test_gsm_safe_replacements() -> None:
    assert gsm_safe("‘a’ ‚b‛") == "'a' 'b'"
    assert gsm_safe("„c“") == '"c"'
    assert gsm_safe("a—b") == "a-b"
    assert gsm_safe("chờ…") == "chờ..."
    assert gsm_safe("1\u00a02\u202f3\u20094\t5") == "1 2 3 4 5"
    assert gsm_safe("• một") == "- một"
    assert gsm_safe("`x`") == "'x'"
    assert is_gsm7(gsm_safe("“Don’t” – … •\u00a0`"))


def test_gsm_safe_then_unaccent() -> None:
    a = analyse("Đi khám sớm – “ngay”", gsm_safe=True, unaccented=True)
    assert a.text == 'Di kham som - "ngay"'
    assert (a.encoding, a.segments) == ("GSM-7", 1)


def test_unaccent() -> None:
    assert unaccent("đường Đông") == "duong Dong"
    assert unaccent("Đi khám sớm") == "Di kham som"
    assert unaccent("Tổng đài quốc gia") == "Tong dai quoc gia"
    assert unaccent(unicodedata.normalize("NFD", "Hỗ trợ")) == "Ho tro"
    assert unaccent("ÀÁẢÃẠ àáảãạ") == "AAAAA aaaaa"


def test_nfc_and_sha256() -> None:
    nfd = unicodedata.normalize("NFD", "Đi khám sớm")
    assert nfc(nfd) == "Đi khám sớm"
    expected = hashlib.sha256("Đi khám sớm".encode("utf-8")).hexdigest()
    assert text_sha256(nfd) == expected == text_sha256("Đi khám sớm")
    assert text_sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- analysis object -------------------------------------------------------------------------


def test_analysis_to_dict_and_cache_isolation() -> None:
    a = analyse("Đi khám sớm")
    d = a.to_dict()
    assert d == {
        "text": "Đi khám sớm",
        "encoding": "UCS-2",
        "characters": 11,
        "units": 11,
        "segments": 1,
        "per_segment": 70,
        "ucs2_characters": ["Đ", "á", "ớ"],
        "parts": ["Đi khám sớm"],
    }
    json.dumps(d)
    a.parts.append("x")  # mutating one result must not corrupt the cache
    assert analyse("Đi khám sớm").parts == ["Đi khám sớm"]
    assert isinstance(a, MessageAnalysis)


def test_estimate_cost() -> None:
    assert estimate_cost(4, 800) == 3200.0
    assert estimate_cost(0, 800) == 0.0
    with pytest.raises(ValueError):
        estimate_cost(-1, 800)


# --- property --------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(list("1a à{€^") + ["ờ", "Đ", "😜", "’", "\u0300", "\u00a0", "\n"])


@given(
    text=st.one_of(st.text(), st.text(alphabet=_ALPHABET, max_size=400)),
    unaccented=st.booleans(),
    safe=st.booleans(),
)
def test_parts_property(text: str, unaccented: bool, safe: bool) -> None:
    a = analyse(text, unaccented=unaccented, gsm_safe=safe)
    assert "".join(a.parts) == a.text
    assert len(a.parts) == a.segments
    assert sum(units_of(p, a.encoding) for p in a.parts) == a.units
    assert a.characters == len(a.text)
    assert unicodedata.is_normalized("NFC", a.text)
    if a.segments > 1:
        assert all(0 < units_of(p, a.encoding) <= a.per_segment for p in a.parts)
        # greedy: every part but the last is full except for one split pair
        assert all(units_of(p, a.encoding) >= a.per_segment - 1 for p in a.parts[:-1])
    elif a.segments == 1:
        assert a.units <= a.per_segment
    assert (a.encoding == "GSM-7") == (a.ucs2_characters == [])


# --- personalisation -------------------------------------------------------------------------


def test_placeholders() -> None:
    assert placeholders("Chào {{ho_ten}}, lịch {{ngay}} tại {{dia_chi}}; {{ho_ten}}") == [
        "ho_ten",
        "ngay",
        "dia_chi",
    ]
    assert placeholders("{ not a field } {x} {{") == []


def test_render() -> None:
    nfd_name = unicodedata.normalize("NFD", "  Nguyễn Văn Đức ")
    out = render("Chào {{ho_ten}}, hẹn {{ ngay }}.", {"ho_ten": nfd_name, "ngay": "08/03"})
    assert out == "Chào Nguyễn Văn Đức, hẹn 08/03."
    assert unicodedata.is_normalized("NFC", out)
    assert render("{a} {{x}} }", {"x": "1"}) == "{a} 1 }"
    assert render("{{{x}}}", {"x": "1"}) == "{1}"
    assert render("{{x}}", {"x": "{{y}}"}) == "{{y}}"  # single pass


@pytest.mark.parametrize("value", [None, "", "   ", "\u00a0\t"])
def test_render_blank_raises(value: str | None) -> None:
    with pytest.raises(MissingFieldError) as exc:
        render("Chào {{ho_ten}}", {"ho_ten": value})
    assert exc.value.field == "ho_ten"
    assert isinstance(exc.value, ValueError)


def test_render_missing_raises() -> None:
    with pytest.raises(MissingFieldError) as exc:
        render("Chào {{ho_ten}} {{ngay}}", {"ho_ten": "An"})
    assert exc.value.field == "ngay"
    assert "ngay" in str(exc.value)


@pytest.mark.parametrize(
    "template", ["{{ bad-name }}", "{{Ten}}", "{{1x}}", "{{}}", "Chào {{ten}", "Chào {{ten"]
)
def test_template_errors(template: str) -> None:
    with pytest.raises(TemplateError) as exc:
        placeholders(template)
    assert "{{field}}" in str(exc.value)
    with pytest.raises(TemplateError):
        render(template, {"ten": "An"})


def test_template_error_message_names_the_placeholder() -> None:
    with pytest.raises(TemplateError, match=r"'\{\{ bad-name \}\}' at position 5"):
        render("Chào {{ bad-name }}", {})


# --- CLI -------------------------------------------------------------------------------------


def test_cli_inspect_json() -> None:
    result = CliRunner().invoke(message, ["inspect", PLAN, "--format", "json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    assert d["encoding"] == "UCS-2"
    assert d["segments"] == 4
    assert d["characters"] == 227
    assert d["units"] == 227
    assert d["per_segment"] == 67
    assert d["text"] == PLAN
    assert "".join(d["parts"]) == PLAN and len(d["parts"]) == 4
    assert d["ucs2_characters"][:4] == ["â", "í", "ự", "ố"]  # à and ò are GSM-7


def test_cli_inspect_json_options() -> None:
    runner = CliRunner()
    args = ["inspect", "--unaccented", "--format", "json", PLAN]
    d = json.loads(runner.invoke(message, args).output)
    assert (d["encoding"], d["segments"], d["units"], d["ucs2_characters"]) == ("GSM-7", 2, 227, [])
    args = ["inspect", "--gsm-safe", "--format", "json", DONT]
    d = json.loads(runner.invoke(message, args).output)
    assert (d["encoding"], d["segments"], d["text"]) == ("GSM-7", 1, DONT.replace("’", "'"))


def test_cli_inspect_stdin() -> None:
    nfd = unicodedata.normalize("NFD", PLAN)
    result = CliRunner().invoke(message, ["inspect", "-", "--format", "json"], input=nfd + "\n")
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    assert (d["text"], d["segments"], d["units"]) == (PLAN, 4, 227)


def test_cli_inspect_table() -> None:
    result = CliRunner().invoke(message, ["inspect", "Đi [b]khám[/b] sớm"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "UCS-2" in out
    assert "Đ (U+0110)" in out and "á (U+00E1)" in out and "ớ (U+1EDB)" in out
    assert "[b]khám[/b]" in out  # not interpreted as rich markup
    assert "part 1 (18)" in out


def test_cli_inspect_stdin_bom_and_bad_bytes() -> None:
    runner = CliRunner()
    args = ["inspect", "-", "--format", "json"]
    d = json.loads(runner.invoke(message, args, input="\ufeffXin chào\r\n").output)
    assert (d["text"], d["encoding"], d["segments"]) == ("Xin chào", "GSM-7", 1)
    result = runner.invoke(message, ["inspect", "-"], input=b"Xin ch\xe0o")
    assert result.exit_code == 1
    assert "not valid UTF-8" in result.output and "Traceback" not in result.output


def test_cli_errors_are_clean() -> None:
    runner = CliRunner()
    result = runner.invoke(message, ["inspect", "-"], input="")
    assert result.exit_code == 1
    assert "Error: the message is empty" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(message, ["inspect", "x", "--format", "xml"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
