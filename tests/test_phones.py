"""Tests for outreach.input.phones: field cases, every kind of spreadsheet damage, and fast path = phonenumbers."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType, carrierdata

from outreach.input import phones
from outreach.input.phones import REASONS, PhoneResult, mask, normalise, split_cell

DATA = Path(__file__).parent / "data"
CASES = [json.loads(line) for line in (DATA / "phones.jsonl").read_text("utf-8").splitlines() if line.strip()]
# Why each rejected field case is rejected (from its note in phones.jsonl).
CASE_REASONS = {
    "9.12345E+08": "scientific-notation",
    "0292 3820 123": "landline",
    "091234567": "too-short",
    "09123456789": "too-long",
}
_VN = phonenumbers.PhoneMetadata.metadata_for_region("VN")
assert _VN is not None and _VN.general_desc is not None
VN, VN_LENGTHS = _VN, set(_VN.general_desc.possible_length)


def e164(national: str) -> str:
    return phonenumbers.format_number(phonenumbers.parse("0" + national, "VN"), PhoneNumberFormat.E164)


def is_mobile(national: str) -> bool:
    num = phonenumbers.parse("0" + national, "VN")
    return phonenumbers.number_type(num) == PhoneNumberType.MOBILE


# Three-digit national prefixes that start a valid mobile number (from phonenumbers' metadata).
MOBILE_PREFIXES = sorted(p for p in map(str, range(100, 1000)) if is_mobile(p + "123456"))


# --- field cases -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["raw"] for c in CASES])
def test_field_case(case: dict[str, str | None]) -> None:
    raw = case["raw"]
    assert raw is not None
    result = normalise(raw)
    assert result.raw == raw
    assert result.e164 == case["e164"]
    if case["e164"] is None:
        assert not result.ok
        assert result.reason == CASE_REASONS[raw]
    else:
        assert result.ok and result.reason is None


# --- damage kinds ----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("912345678", "+84912345678"),                # leading zero lost
    ("912345004.0", "+84912345004"),              # numeric cell with decimal part
    ("912345004.00", "+84912345004"),
    ("84912345678.0", "+84912345678"),
    ("84912345678", "+84912345678"),              # '+' lost
    ("0912 345 678", "+84912345678"),
    ("091.234.5678", "+84912345678"),
    ("091-234-5678", "+84912345678"),
    ("(091) 234 5678", "+84912345678"),
    ("+84 (0) 912 345 001", "+84912345001"),
    ("+84 (0)912345001", "+84912345001"),
    ("+840912345001", "+84912345001"),
    ("0084912345678", "+84912345678"),
    ("0084 91 234 5678", "+84912345678"),
    ("(+84) 91 234 5678", "+84912345678"),
    ("0844000123", "+84844000123"),               # national number starting with 84
    ("844000123", "+84844000123"),
    ("84844000123", "+84844000123"),
    ("+84844000123", "+84844000123"),
    ("0084844000123", "+84844000123"),
    ("841234567", None),                          # 8-4-1: mobile prefix 841 … see next line
    ("０９１２３４５６７８", "+84912345678"),        # full-width digits
    ("＋８４ ９１２ ３４５ ６７８", "+84912345678"),
    ("0912\u00a0345\u00a0678", "+84912345678"),   # non-breaking spaces
    ("0912\u202f345\u202f678", "+84912345678"),   # narrow no-break spaces
    ("\u00a00912345678\u00a0", "+84912345678"),
    ("'0912345678", "+84912345678"),             # Excel text marker
    ("\u20190912345678", "+84912345678"),
    ('="0912345678"', "+84912345678"),            # Excel formula keeping the zero
    ("  0912345678\t", "+84912345678"),
    ("0912\u2013345\u2013678", "+84912345678"),   # en dashes
    ("\ufeff0912345678", "+84912345678"),
])
def test_damage_is_repaired(raw: str, expected: str | None) -> None:
    if expected is None:  # "841234567" is a 9-digit national number, never +84 1234567
        expected = e164("841234567")
        assert expected == "+84841234567"
    assert normalise(raw).e164 == expected


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "empty"),
    ("   ", "empty"),
    ("\u00a0", "empty"),
    ("'", "empty"),
    ("-", "empty"),
    ("nan", "empty"),
    ("#N/A", "empty"),
    ("9.12345E+08", "scientific-notation"),
    ("9,12345E+08", "scientific-notation"),
    ("8.4912E+10", "scientific-notation"),
    ("abc", "not-a-number"),
    ("không có", "not-a-number"),
    ("0912345678 (Zalo)", "not-a-number"),
    ("091234567", "too-short"),
    ("12345", "too-short"),
    ("+84 12", "too-short"),
    ("09123456789", "too-long"),
    ("0912345678901234", "too-long"),
    ("0292 3820 123", "landline"),
    ("02838123456", "landline"),
    ("+84 24 3825 1234", "landline"),
    ("19001234", "premium-rate"),
    ("1900 123 456", "premium-rate"),
    ("18001234", "toll-free"),
    ("1800 1234 56", "toll-free"),
    ("0672123456", "voip"),
    ("1999123", "not-mobile"),
    ("+12025550123", "foreign"),
    ("001 202 555 0123", "foreign"),
    ("+44 20 7946 0958", "foreign"),
    ("0111234567", "invalid"),
])
def test_rejections_have_reasons(raw: str, reason: str) -> None:
    result = normalise(raw)
    assert (result.ok, result.e164, result.reason) == (False, None, reason)
    assert result.reason in REASONS


def test_only_old_prefixes_get_a_number_as_hint() -> None:
    assert normalise("0292 3820 123").hint is None
    assert normalise("19001234").hint is None
    assert normalise("+12025550123").hint == "country code 1 (US)"
    assert normalise("01688123456").hint == "+84388123456"


def test_decimal_part_never_becomes_a_digit() -> None:
    assert normalise("912345004.0").e164 == "+84912345004"
    assert normalise("912345004,0").e164 == "+84912345004"  # Vietnamese decimal comma
    assert normalise("912345004.5").e164 is None  # a real fraction: not a repairable cell


def test_every_reason_is_in_the_docstring_table() -> None:
    table = phones.__doc__ or ""
    for code in REASONS:
        assert re.search(rf"^{re.escape(code)}\s", table, re.M), code


# --- old prefixes (MIC Decision 798/QĐ-BTTTT, 2018) ------------------------------------------

OLD_TABLE = json.loads((Path(phones.__file__).parent.parent / "data" / "old_prefixes.json").read_text("utf-8"))["prefixes"]


def test_old_prefix_table_is_the_official_one() -> None:
    expected = {"0120": "070", "0121": "079", "0122": "077", "0126": "076", "0128": "078",
                "0123": "083", "0124": "084", "0125": "085", "0127": "081", "0129": "082",
                **{f"016{d}": f"03{d}" for d in range(2, 10)},
                "0186": "056", "0188": "058", "0199": "059"}
    assert {old: v["new"] for old, v in OLD_TABLE.items()} == expected


@pytest.mark.parametrize("old", sorted(OLD_TABLE))
def test_old_prefix_rejected_with_hint_and_converted_with_flag(old: str) -> None:
    raw = old + "8123456"
    new = "+84" + OLD_TABLE[old]["new"][1:] + "8123456"
    rejected = normalise(raw)
    assert (rejected.e164, rejected.reason, rejected.hint) == (None, "old-prefix", new)
    converted = normalise(raw, convert_old_prefixes=True)
    assert converted.ok and converted.e164 == new and converted.reason is None
    assert converted.hint == f"converted from old number {raw}"
    assert converted.carrier == OLD_TABLE[old]["carrier"]


@pytest.mark.parametrize("raw", ["01688123456", "1688123456", "841688123456", "+84 168 812 3456",
                                 "0084 1688 123 456", "+84 (0) 168 812 3456", "1688123456.0"])
def test_old_prefix_in_damaged_forms(raw: str) -> None:
    assert normalise(raw).hint == "+84388123456"
    assert normalise(raw, convert_old_prefixes=True).e164 == "+84388123456"


# --- carriers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "carrier"), [
    ("0381234567", "Viettel"),
    ("0981234567", "Viettel"),
    ("0861234567", "Viettel"),
    ("0701234567", "MobiFone"),
    ("0901234567", "MobiFone"),
    ("0912345678", "VinaPhone"),
    ("0831234567", "VinaPhone"),
    ("0921234567", "Vietnamobile"),
    ("0561234567", "Vietnamobile"),
    ("0591234567", "Gmobile"),
    ("0993123456", "Gmobile"),
    ("0871234567", "iTel"),   # phonenumbers says Vinaphone: corrected by our prefix table
    ("0559000123", "Reddi"),
])
def test_carrier(raw: str, carrier: str) -> None:
    assert normalise(raw).carrier == carrier


def test_rejected_numbers_have_no_carrier_except_old_prefix() -> None:
    assert normalise("0292 3820 123").carrier is None
    assert normalise("01688123456").carrier == "Viettel"


# --- property: any valid mobile in any accepted form ------------------------------------------

FORMS: list[Callable[[str], str]] = [
    lambda n: "0" + n,
    lambda n: n,
    lambda n: "84" + n,
    lambda n: "+84" + n,
    lambda n: f"+84 {n[:2]} {n[2:5]} {n[5:]}",
    lambda n: f"+84 {n[:3]} {n[3:6]} {n[6:]}",
    lambda n: "0084" + n,
    lambda n: f"0084 {n[:2]} {n[2:5]} {n[5:]}",
    lambda n: f"0{n[:2]}.{n[2:5]}.{n[5:]}",
    lambda n: f"0{n[:2]}-{n[2:5]}-{n[5:]}",
    lambda n: f"(+84){n}",
    lambda n: f"(+84) {n[:2]} {n[2:5]} {n[5:]}",
    lambda n: f"+84 (0) {n[:3]} {n[3:6]} {n[6:]}",
    lambda n: n + ".0",
    lambda n: "84" + n + ".0",
    lambda n: "'0" + n,
    lambda n: "0" + n.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
    lambda n: f"0{n[:3]}\u00a0{n[3:6]}\u00a0{n[6:]}",
]


@settings(max_examples=500, deadline=None)
@given(prefix=st.sampled_from(MOBILE_PREFIXES), rest=st.text("0123456789", min_size=6, max_size=6),
       form=st.sampled_from(FORMS))
def test_valid_mobile_in_any_form_normalises_like_phonenumbers(
        prefix: str, rest: str, form: Callable[[str], str]) -> None:
    national = prefix + rest
    assume(is_mobile(national))
    result = normalise(form(national))
    assert result.ok, (form(national), result)
    assert result.e164 == e164(national)


# --- property: the fast path agrees with plain phonenumbers ----------------------------------

_LEADS = ["", "", "0", "00", "84", "+84", "0084", "(+84)", "+84 (0) ", "+840", "840", "8400", "+1",
          "+", "(0)", "+44 ", "00 84 ", "0 ", "+8484", "(+84) 0", "0840"]


_OTHER_STARTS = ["168", "120", "199", "292", "28", "24", "1900", "1800", "672", "1999", "84", "0", "121"]


@st.composite
def messy_numbers(draw: st.DrawFn) -> str:
    lead = draw(st.sampled_from(_LEADS))
    kind = draw(st.integers(0, 3))
    if kind <= 1:  # a mobile number, give or take a digit
        body = draw(st.sampled_from(MOBILE_PREFIXES)) + draw(st.text("0123456789", min_size=5, max_size=7))
    elif kind == 2:  # old prefixes, landlines, service numbers, a national part starting with 84
        body = draw(st.sampled_from(_OTHER_STARTS)) + draw(st.text("0123456789", min_size=3, max_size=8))
    else:
        body = draw(st.text("0123456789", max_size=14))
    chars = list(body)
    for _ in range(draw(st.integers(0, 4))):
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from([" ", ".", "-", "(", ")", " "])))
    tail = draw(st.sampled_from(["", "", "", ".0", ".00", " "]))
    return lead + "".join(chars) + tail


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=messy_numbers(), convert=st.booleans())
def test_fast_path_matches_phonenumbers(raw: str, convert: bool) -> None:
    assert phones._normalise(raw, convert, fast=True) == phones._normalise(raw, convert, fast=False)


def test_fast_path_matches_phonenumbers_on_a_large_seeded_sample() -> None:
    rng = random.Random(84)
    for _ in range(10_000):
        if rng.random() < 0.5:
            body = rng.choice(MOBILE_PREFIXES) + "".join(rng.choice("0123456789 .-") for _ in range(rng.randint(5, 9)))
        else:
            body = "".join(rng.choice("0123456789 .-") for _ in range(rng.randint(0, 14)))
        raw = rng.choice(_LEADS) + body
        assert phones._normalise(raw, False, fast=True) == phones._normalise(raw, False, fast=False), raw


def test_cache_key_is_exact_for_vn_metadata() -> None:
    # Number type depends only on the first 4 national digits and the length (see phones.py):
    # every VN pattern must give the same answer whatever follows the 4th digit.
    descs = [d for d in (VN.general_desc, VN.fixed_line, VN.mobile, VN.toll_free, VN.premium_rate,
                         VN.shared_cost, VN.personal_number, VN.voip, VN.pager, VN.uan, VN.voicemail)
             if d is not None and d.national_number_pattern]
    lengths = VN_LENGTHS
    assert all(set(d.possible_length) <= lengths for d in descs)
    patterns = [re.compile(d.national_number_pattern or "") for d in descs]
    rng = random.Random(4)
    for length in sorted(lengths):
        for p in range(10_000):
            prefix = f"{p:04d}"
            fills = ["0" * (length - 4), "9" * (length - 4),
                     "".join(rng.choice("0123456789") for _ in range(length - 4))]
            answers = {tuple(bool(pat.fullmatch(prefix + f)) for pat in patterns) for f in fills}
            assert len(answers) == 1, (prefix, length)
    # …and the carrier table never looks further than the 4th national digit.
    assert max(len(k) for k in carrierdata.CARRIER_DATA if k.startswith("84")) <= 2 + 4


# --- split_cell -------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "parts"), [
    ("0912345678 / 0987654321", ["0912345678", "0987654321"]),
    ("0912345678; 0987654321", ["0912345678", "0987654321"]),
    ("0912345678, 0987654321", ["0912345678", "0987654321"]),
    ("0912345678|0987654321", ["0912345678", "0987654321"]),
    ("0912345678\n0987654321", ["0912345678", "0987654321"]),
    ("0912345678\r\n0987654321\r\n", ["0912345678", "0987654321"]),
    ("0912345678 0987654321", ["0912345678", "0987654321"]),
    ("0912345678 - 0987654321", ["0912345678", "0987654321"]),
    ("+84 91 234 5678 0987654321", ["+84 91 234 5678", "0987654321"]),
    ("+84 91 234 5678", ["+84 91 234 5678"]),
    ("091 234 5678", ["091 234 5678"]),
    ("0912 345 678", ["0912 345 678"]),
    ("+84 (0) 912 345 001", ["+84 (0) 912 345 001"]),
    ("0292 3820 123", ["0292 3820 123"]),
    ("0912345678", ["0912345678"]),
    ("  ", []),
    ("", []),
    ("0912345678 ;; ", ["0912345678"]),
    ("912345004,0", ["912345004,0"]),  # a decimal comma, not two numbers
    ("hỏi con", ["hỏi con"]),
])
def test_split_cell(raw: str, parts: list[str]) -> None:
    assert split_cell(raw) == parts


# --- mask -------------------------------------------------------------------------------------


def test_mask() -> None:
    assert mask("+84912345678") == "091****678"
    assert mask("+84388123456") == "038****456"
    assert mask("h:3f9a0c") == "h:3f9a0c"


def test_result_is_frozen_with_ok() -> None:
    result = normalise("0912345678")
    assert result == PhoneResult("0912345678", "+84912345678", "VinaPhone")
    with pytest.raises(AttributeError):
        result.e164 = None  # type: ignore[misc]


# --- numbers as people write them (issue 16) -------------------------------------------------


@pytest.mark.parametrize(("raw", "parts"), [
    ("ĐT: 0912 345 678 (Zalo)", ["0912 345 678"]),
    ("Tel:0912345678", ["0912345678"]),
    ("SĐT 0912345678 hoặc 0987654321", ["0912345678", "0987654321"]),
    ("DĐ.0912.345.678", ["0912.345.678"]),
    ("0912345678 (chồng) / 0987 654 321 (vợ)", ["0912345678", "0987 654 321"]),
    ("ĐT: 0292 3820 123 - DĐ: 0912345678", ["0292 3820 123", "0912345678"]),
    ("SĐT: 0912345678\nDĐ: 0987654321", ["0912345678", "0987654321"]),
    ("0912345678-0987654321", ["0912345678", "0987654321"]),
    ("0912345678 hoặc 0987654321", ["0912345678", "0987654321"]),
    ("032-555-6827", ["032-555-6827"]),
    ("không có", ["không có"]),
    ("chưa cập nhật", ["chưa cập nhật"]),
    ("9.12345E+08", ["9.12345E+08"]),
])
def test_split_cell_reads_labels_notes_and_joined_numbers(raw: str, parts: list[str]) -> None:
    assert split_cell(raw) == parts


@pytest.mark.parametrize("raw", [
    "\u00a00912\u00a0345\u00a0678",        # non-breaking spaces
    "0912\u200b345\u200b678",              # zero-width spaces
    "０９１２３４５６７８",                  # full-width digits
    "'0912345678",                         # Excel's leading apostrophe
    "\u20180912345678",                    # the apostrophe Word turns it into
    "ĐT:\u00a0０９１２ ３４５ ６７８ (Zalo)",
])
def test_invisible_and_look_alike_characters(raw: str) -> None:
    assert [normalise(p).e164 for p in split_cell(raw)] == ["+84912345678"]


def test_every_number_in_a_labelled_cell_gets_its_own_reason() -> None:
    got = [normalise(p) for p in split_cell("ĐT: 0292 3820 123 - DĐ: 0912345678 (Zalo)")]
    assert [(r.e164, r.reason) for r in got] == [(None, "landline"), ("+84912345678", None)]


@pytest.mark.parametrize("cell,expected", [
    ("912,345,670.00", "+84912345670"),   # en-US number format
    ("912.345.678,00", "+84912345678"),   # vi-VN number format
    ("0912.345.678,00", "+84912345678"),
    ("84,912,345,678.00", "+84912345678"),
    ("912,345,678", "+84912345678"),
])
def test_a_number_shown_with_thousands_separators_is_one_number(cell: str, expected: str) -> None:
    from outreach.input.phones import split_cell

    parts = split_cell(cell)
    assert len(parts) == 1
    assert normalise(parts[0]).e164 == expected
