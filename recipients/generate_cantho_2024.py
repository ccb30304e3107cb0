#!/usr/bin/env python3
"""Generate the synthetic Cần Thơ 2024 recipient lists in recipients/cantho-2024/.

Stdlib only and deterministic: a fixed seed, no set iteration, no clock, no environment
lookups, so `python recipients/generate_cantho_2024.py` rewrites every file byte-identically.

One CSV per district-level unit of Cần Thơ in 2024 (5 quận, 4 huyện), shaped like real exports
from ward offices: different headers per file, UTF-8 with and without BOM, one semicolon file,
one Windows-1258 file, CRLF line endings, phone numbers in the many forms people type, a few
percent of unusable phone cells and some people listed twice. EXPECTED.json records the truth
(counts only, never the numbers).

Synthetic number convention: every valid number is a Vietnamese mobile prefix (0 + 2 digits)
followed by the block 555 and 4 random digits, e.g. 091 555 0123 (E.164 +84915550123).
"""

from __future__ import annotations

import csv
import io
import json
import random
import unicodedata
from pathlib import Path

SEED = 20240730  # Ngày toàn dân phòng, chống mua bán người, 30/7/2024
BLOCK = "555"
OUT_DIR = Path(__file__).resolve().parent / "cantho-2024"

# --------------------------------------------------------------------------------------------
# Administrative units of Cần Thơ in 2024 (before the 2025 mergers).
# --------------------------------------------------------------------------------------------

DISTRICTS: dict[str, tuple[str, list[str]]] = {
    "ninh-kieu": ("Ninh Kiều", [
        "Cái Khế", "An Hòa", "Thới Bình", "An Nghiệp", "An Cư", "Tân An", "An Phú",
        "Xuân Khánh", "Hưng Lợi", "An Khánh", "An Bình"]),
    "binh-thuy": ("Bình Thủy", [
        "Bình Thủy", "Trà An", "Trà Nóc", "Thới An Đông", "An Thới", "Bùi Hữu Nghĩa",
        "Long Hòa", "Long Tuyền"]),
    "cai-rang": ("Cái Răng", [
        "Lê Bình", "Hưng Phú", "Hưng Thạnh", "Ba Láng", "Thường Thạnh", "Phú Thứ", "Tân Phú"]),
    "o-mon": ("Ô Môn", [
        "Châu Văn Liêm", "Thới Hòa", "Thới Long", "Long Hưng", "Thới An", "Phước Thới",
        "Trường Lạc"]),
    "thot-not": ("Thốt Nốt", [
        "Thốt Nốt", "Thới Thuận", "Thuận An", "Tân Lộc", "Trung Nhứt", "Thạnh Hoà",
        "Trung Kiên", "Tân Hưng", "Thuận Hưng"]),
    "phong-dien": ("Phong Điền", [
        "Thị trấn Phong Điền", "Nhơn Ái", "Giai Xuân", "Tân Thới", "Trường Long", "Mỹ Khánh",
        "Nhơn Nghĩa"]),
    "co-do": ("Cờ Đỏ", [
        "Thị trấn Cờ Đỏ", "Thạnh Phú", "Trung Hưng", "Thới Hưng", "Đông Hiệp", "Đông Thắng",
        "Thới Đông", "Thới Xuân", "Trung An", "Trung Thạnh"]),
    "thoi-lai": ("Thới Lai", [
        "Thị trấn Thới Lai", "Thới Thạnh", "Tân Thạnh", "Xuân Thắng", "Đông Bình",
        "Đông Thuận", "Thới Tân", "Trường Thắng", "Định Môn", "Trường Thành", "Trường Xuân",
        "Trường Xuân A", "Trường Xuân B"]),
    "vinh-thanh": ("Vĩnh Thạnh", [
        "Thị trấn Thạnh An", "Thị trấn Vĩnh Thạnh", "Thạnh Mỹ", "Vĩnh Trinh", "Thạnh An",
        "Thạnh Tiến", "Thạnh Thắng", "Thạnh Lợi", "Thạnh Quới", "Thạnh Lộc", "Vĩnh Bình"]),
}

# --------------------------------------------------------------------------------------------
# Shape of each export. Columns: stt, name, gender, phone, ward, district.
# "main_form" is the phone form the office mostly used; the rest are mixed in.
# --------------------------------------------------------------------------------------------

FILES: dict[str, dict] = {
    "binh-thuy": dict(encoding="utf-8-sig", delimiter=";", main_form="dotted",
                      columns=[("stt", "stt"), ("name", "ho ten"), ("phone", "SĐT"),
                               ("ward", "xa phuong"), ("district", "huyen")]),
    "cai-rang": dict(encoding="utf-8-sig", delimiter=",", main_form="lost_zero",
                     columns=[("name", "Họ tên"), ("phone", "Di động"), ("ward", "Phường"),
                              ("district", "Quận")]),
    "co-do": dict(encoding="utf-8-sig", delimiter=",", main_form="spaced", upper_names=True,
                  columns=[("stt", "TT"), ("name", "HỌ VÀ TÊN"), ("phone", "SỐ ĐIỆN THOẠI"),
                           ("ward", "XÃ/THỊ TRẤN"), ("district", "HUYỆN")]),
    "ninh-kieu": dict(encoding="utf-8-sig", delimiter=",", main_form="plain",
                      columns=[("stt", "STT"), ("name", "Họ và tên"),
                               ("phone", "Số điện thoại"), ("ward", "Phường/Xã"),
                               ("district", "Quận/Huyện")]),
    "o-mon": dict(encoding="utf-8", delimiter=",", main_form="plus84_spaced",
                  columns=[("stt", "No"), ("name", "Full name"), ("phone", "Phone"),
                           ("ward", "Ward"), ("district", "District")]),
    "phong-dien": dict(encoding="utf-8-sig", delimiter=",", main_form="apostrophe",
                       columns=[("stt", "STT"), ("name", "Họ và tên"), ("phone", "Số ĐT"),
                                ("ward", "Xã/Thị trấn")]),  # no district column
    "thoi-lai": dict(encoding="utf-8-sig", delimiter=",", main_form="numeric_float",
                     columns=[("stt", "STT"), ("name", "Họ và tên"), ("gender", "Giới tính"),
                              ("phone", "Số điện thoại"), ("ward", "Xã"),
                              ("district", "Huyện")]),
    "thot-not": dict(encoding="cp1258", delimiter=",", main_form="dashed",
                     columns=[("stt", "STT"), ("name", "Họ và tên"), ("phone", "Điện thoại"),
                              ("ward", "Phường"), ("district", "Quận")]),
    "vinh-thanh": dict(encoding="utf-8", delimiter=",", main_form="cc84",
                       columns=[("stt", "stt"), ("name", "họ tên"), ("phone", "sđt"),
                                ("ward", "xã"), ("district", "huyện")]),
}

# --------------------------------------------------------------------------------------------
# Mobile prefixes (2024) and the pre-2018 11-digit prefixes they replaced.
# --------------------------------------------------------------------------------------------

CARRIER_PREFIXES: dict[str, list[str]] = {
    "Viettel": ["086", "096", "097", "098", "032", "033", "034", "035", "036", "037", "038",
                "039"],
    "MobiFone": ["090", "093", "070", "076", "077", "078", "079"],
    "VinaPhone": ["088", "091", "094", "081", "082", "083", "084", "085"],
    "Vietnamobile": ["092", "056", "058"],
    "Gmobile": ["099", "059"],
    "iTel": ["087"],
}
# Weights roughly follow market share (Viettel > VinaPhone ≈ MobiFone > others).
CARRIER_WEIGHTS = {"Viettel": 52, "MobiFone": 20, "VinaPhone": 21, "Vietnamobile": 4,
                   "Gmobile": 1, "iTel": 2}
PREFIX_CARRIER = {p: c for c, ps in CARRIER_PREFIXES.items() for p in ps}
OLD_PREFIX = {  # old 11-digit prefix -> new 10-digit prefix (conversion of 2018)
    "0162": "032", "0163": "033", "0164": "034", "0165": "035", "0166": "036",
    "0167": "037", "0168": "038", "0169": "039",  # Viettel
    "0120": "070", "0121": "079", "0122": "077", "0126": "076", "0128": "078",  # MobiFone
    "0123": "083", "0124": "084", "0125": "085", "0127": "081", "0129": "082",  # VinaPhone
    "0186": "056", "0188": "058",  # Vietnamobile
    "0199": "059",  # Gmobile
}

# --------------------------------------------------------------------------------------------
# Names.
# --------------------------------------------------------------------------------------------

FAMILY = [("Nguyễn", 310), ("Trần", 100), ("Lê", 90), ("Phạm", 55), ("Huỳnh", 55),
          ("Võ", 45), ("Phan", 40), ("Trương", 25), ("Đặng", 18), ("Bùi", 15), ("Đỗ", 12),
          ("Hồ", 15), ("Ngô", 12), ("Dương", 10), ("Lý", 10), ("Lâm", 10), ("Châu", 8),
          ("Đinh", 6), ("Mai", 6), ("Cao", 5), ("Tô", 5), ("Lưu", 5), ("Thái", 5),
          ("Quách", 4), ("Tạ", 3), ("La", 3), ("Hoàng", 8), ("Vũ", 4), ("Thạch", 4),
          ("Danh", 3), ("Sơn", 3), ("Kim", 3)]
MIDDLE_M = [("Văn", 55), ("Minh", 10), ("Hoàng", 5), ("Quốc", 6), ("Thanh", 6), ("Hữu", 6),
            ("Đức", 4), ("Công", 4), ("Tấn", 5), ("Trọng", 3), ("Chí", 3), ("Gia", 3)]
MIDDLE_F = [("Thị", 55), ("Ngọc", 12), ("Thanh", 6), ("Kim", 6), ("Mỹ", 5), ("Thu", 4),
            ("Bích", 3), ("Hồng", 4), ("Thúy", 3), ("Phương", 3)]
SECOND_MIDDLE_F = ["Ngọc", "Kim", "Mỹ", "Thu", "Bích", "Hồng", "Thanh", "Thúy", "Diễm"]
SECOND_MIDDLE_M = ["Minh", "Hoàng", "Thanh", "Quốc", "Hữu"]
GIVEN_M = ["An", "Bảo", "Bình", "Cường", "Dũng", "Duy", "Đạt", "Hải", "Hiếu", "Hòa", "Hùng",
           "Huy", "Khang", "Khoa", "Lâm", "Lộc", "Long", "Lợi", "Minh", "Nam", "Nghĩa",
           "Nhân", "Phát", "Phong", "Phúc", "Quang", "Sang", "Sơn", "Tài", "Tâm", "Thành",
           "Thắng", "Thịnh", "Toàn", "Trí", "Trung", "Tuấn", "Tùng", "Việt", "Vinh", "Vũ",
           "Hậu", "Hiền", "Khải", "Kiệt", "Luân", "Nhựt", "Phước", "Tín", "Tường", "Út"]
GIVEN_F = ["Anh", "Bích", "Châu", "Diễm", "Dung", "Duyên", "Giang", "Hà", "Hạnh", "Hằng",
           "Hiền", "Hoa", "Hồng", "Hương", "Huyền", "Lan", "Liên", "Linh", "Loan", "Mai",
           "My", "Nga", "Ngân", "Ngọc", "Nhi", "Nhung", "Oanh", "Phượng", "Quyên", "Thảo",
           "Thu", "Thủy", "Trang", "Trinh", "Tuyết", "Uyên", "Vân", "Vy", "Xuân", "Yến",
           "Lệ", "Mến", "Nguyệt", "Thắm", "Thơ", "Tiên", "Trâm", "Út", "Kiều", "Diệu"]

# --------------------------------------------------------------------------------------------
# Phone forms.
# --------------------------------------------------------------------------------------------


def _parts(n: str) -> tuple[str, str, str]:
    """0915550123 -> ('91', '555', '0123')."""
    return n[1:3], n[3:6], n[6:]


VALID_FORMS = {
    "plain": lambda n: n,                                        # 0915550123
    "spaced": lambda n: f"{n[:4]} {n[4:7]} {n[7:]}",             # 0915 550 123
    "lost_zero": lambda n: n[1:],                                # 915550123
    "numeric_float": lambda n: n[1:] + ".0",                     # 915550123.0
    "cc84": lambda n: "84" + n[1:],                              # 84915550123
    "plus84": lambda n: "+84" + n[1:],                           # +84915550123
    "plus84_spaced": lambda n: "+84 {} {} {}".format(*_parts(n)),  # +84 91 555 0123
    "0084": lambda n: "0084" + n[1:],                            # 0084915550123
    "paren_plus84": lambda n: "(+84)" + n[1:],                   # (+84)915550123
    "plus84_zero": lambda n: "+84 (0) {} {} {}".format(*_parts(n)),  # +84 (0) 91 555 0123
    "dotted": lambda n: f"{n[:3]}.{n[3:6]}.{n[6:]}",             # 091.555.0123
    "dashed": lambda n: f"{n[:3]}-{n[3:6]}-{n[6:]}",             # 091-555-0123
    "apostrophe": lambda n: "'" + n,                             # '0915550123
}
# How often each form shows up outside a file's main form.
MIXED_FORMS = [("plain", 30), ("lost_zero", 12), ("spaced", 8), ("dotted", 7), ("dashed", 5),
               ("cc84", 5), ("plus84", 5), ("plus84_spaced", 5), ("0084", 3),
               ("paren_plus84", 3), ("plus84_zero", 3), ("numeric_float", 5),
               ("apostrophe", 5)]
TWO_NUMBER_FORMS = ["plain", "plain", "plain", "dotted", "spaced", "lost_zero"]
TWO_NUMBER_SEPARATORS = [" / ", " / ", "/", ", ", " - "]

# Bad phone cells, total per kind over all files (about 4 % of rows).
BAD_KINDS = {"landline": 14, "too_short": 12, "too_long": 9, "text": 18, "empty": 16,
             "scientific": 10, "old_11_digit": 12}
TEXTS = ["không có", "chưa cập nhật", "đã chuyển đi", "Không có", "Chưa cập nhật",
         "Đã chuyển đi", "KHÔNG CÓ"]

TWO_NUMBER_CELLS = 22          # rows whose phone cell holds two valid numbers
CROSS_DISTRICT_SHARE = 0.03    # share of people also listed in a second district
IN_FILE_DUPLICATES = 7         # people listed twice in the same file


# --------------------------------------------------------------------------------------------
# Windows-1258 encoding.
# --------------------------------------------------------------------------------------------

TONE_MARKS = "\u0300\u0301\u0303\u0309\u0323"  # grave, acute, tilde, hook above, dot below


def _cp1258_char(ch: str) -> bytes:
    """Encode one (NFC) character in cp1258 the way Vietnamese Windows does.

    cp1258 holds the base letters (â ê ô ơ ư ă đ ...) and some precomposed letters, plus the
    five tone marks as combining characters. Try the character itself; otherwise split off the
    tone marks, recompose what is left into a base letter and write base + tone marks. (A plain
    NFD prefix does not work for letters such as ệ: canonical order puts the dot below U+0323
    before the circumflex U+0302, and U+0302 alone is not in cp1258.) If that still fails,
    fall back to the longest encodable recomposed prefix of the NFD form, then the rest.
    """
    try:
        return ch.encode("cp1258")
    except UnicodeEncodeError:
        pass
    nfd = unicodedata.normalize("NFD", ch)
    base = unicodedata.normalize("NFC", "".join(c for c in nfd if c not in TONE_MARKS))
    tones = "".join(c for c in nfd if c in TONE_MARKS)
    try:
        return base.encode("cp1258") + tones.encode("cp1258")
    except UnicodeEncodeError:
        pass
    for cut in range(len(nfd) - 1, 0, -1):
        head = unicodedata.normalize("NFC", nfd[:cut])
        try:
            encoded = head.encode("cp1258")
        except UnicodeEncodeError:
            continue
        return encoded + b"".join(_cp1258_char(c) for c in nfd[cut:])
    raise UnicodeEncodeError("cp1258", ch, 0, 1, "no cp1258 form for this character")


def encode_cp1258(text: str) -> bytes:
    data = b"".join(_cp1258_char(c) for c in unicodedata.normalize("NFC", text))
    back = unicodedata.normalize("NFC", data.decode("cp1258"))
    assert back == unicodedata.normalize("NFC", text), "cp1258 round trip failed"
    return data


def encode(text: str, encoding: str) -> bytes:
    if encoding == "cp1258":
        return encode_cp1258(text)
    return text.encode(encoding)  # "utf-8-sig" writes the BOM


# --------------------------------------------------------------------------------------------
# Generation.
# --------------------------------------------------------------------------------------------


def weighted(rng: random.Random, items: list[tuple[str, int]]) -> str:
    return rng.choices([k for k, _ in items], weights=[w for _, w in items])[0]


class Numbers:
    """Hands out distinct synthetic mobile numbers 0PP555XXXX (national, 10 digits)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: dict[str, None] = {}  # dict, not set: no hash-order dependence anywhere
        self.carriers = [(c, w) for c, w in CARRIER_WEIGHTS.items()]

    def reserve(self, n: str) -> bool:
        if n in self.used:
            return False
        self.used[n] = None
        return True

    def new(self, prefixes: list[str] | None = None) -> str:
        while True:
            if prefixes is None:
                prefix = self.rng.choice(CARRIER_PREFIXES[weighted(self.rng, self.carriers)])
            else:
                prefix = self.rng.choice(prefixes)
            n = prefix + BLOCK + f"{self.rng.randrange(10000):04d}"
            if self.reserve(n):
                return n


def e164(national: str) -> str:
    return "+84" + national[1:]


def make_name(rng: random.Random) -> tuple[str, str]:
    female = rng.random() < 0.52
    family = weighted(rng, FAMILY)
    if female:
        middle = weighted(rng, MIDDLE_F)
        if middle == "Thị" and rng.random() < 0.18:
            middle += " " + rng.choice(SECOND_MIDDLE_F)
        given = rng.choice(GIVEN_F)
    else:
        middle = weighted(rng, MIDDLE_M)
        if middle == "Văn" and rng.random() < 0.06:
            middle += " " + rng.choice(SECOND_MIDDLE_M)
        given = rng.choice(GIVEN_M)
    return f"{family} {middle} {given}", ("Nữ" if female else "Nam")


def pick_form(rng: random.Random, main_form: str) -> str:
    return main_form if rng.random() < 0.6 else weighted(rng, MIXED_FORMS)


def bad_cell(rng: random.Random, kind: str, numbers: Numbers) -> str:
    if kind == "landline":  # Cần Thơ fixed line, area code 0292, subscriber 3 555 xxx
        x = f"{rng.randrange(1000):03d}"
        return rng.choice([f"0292 3 555 {x}", f"02923555{x}", f"0292.3555.{x}",
                           f"(0292) 3555 {x}", f"0292 3555{x}"])
    if kind == "too_short":
        n = numbers.new()
        return n[:rng.choice([8, 9])]          # 09155501, 091555012
    if kind == "too_long":
        n = numbers.new()
        extra = str(rng.randrange(10))
        return rng.choice([n + extra, f"{n[:4]} {n[4:7]} {n[7:]}{extra}"])
    if kind == "text":
        return rng.choice(TEXTS)
    if kind == "empty":
        return ""
    if kind == "scientific":  # an Excel number column shown in scientific notation
        n = numbers.new()
        if rng.random() < 0.6:
            digits = n[1:]                              # 915550123 -> 9.15550123E+08
            mantissa = (digits[0] + "." + digits[1:]).rstrip("0").rstrip(".")
            return f"{mantissa}E+08"
        digits = "84" + n[1:]                           # 84915550123 -> 8.49156E+10
        mantissa = f"{float(digits[0] + '.' + digits[1:]):.5f}".rstrip("0").rstrip(".")
        return f"{mantissa}E+10"
    if kind == "old_11_digit":  # pre-2018 number, e.g. 0168 555 0123 (now 038 555 0123)
        while True:
            old = rng.choice(list(OLD_PREFIX))
            last4 = f"{rng.randrange(10000):04d}"
            if numbers.reserve(OLD_PREFIX[old] + BLOCK + last4):
                break
        return rng.choice([f"{old} {BLOCK} {last4}", f"{old}{BLOCK}{last4}",
                           f"{old}.{BLOCK}.{last4}"])
    raise ValueError(kind)


def generate() -> tuple[dict[str, list[dict]], dict]:
    rng = random.Random(SEED)
    numbers = Numbers(rng)
    slugs = list(FILES)  # generation order (fixed by the dict literal)

    # 1. People per file: base counts, then the bad kinds and two-number cells spread over files.
    base_counts = {s: rng.randint(228, 258) for s in slugs}
    bad_pool = [k for k, c in BAD_KINDS.items() for _ in range(c)]
    rng.shuffle(bad_pool)
    bad_by_file: dict[str, list[str]] = {s: [] for s in slugs}
    for kind in bad_pool:
        bad_by_file[rng.choice(slugs)].append(kind)
    two_by_file = {s: 0 for s in slugs}
    for _ in range(TWO_NUMBER_CELLS):
        two_by_file[rng.choice(slugs)] += 1

    rows: dict[str, list[dict]] = {}
    for s in slugs:
        district, wards = DISTRICTS[s]
        main_form = FILES[s]["main_form"]
        n = base_counts[s]
        kinds = (bad_by_file[s] + ["two"] * two_by_file[s]
                 + ["valid"] * (n - len(bad_by_file[s]) - two_by_file[s]))
        rng.shuffle(kinds)
        file_rows = []
        for kind in kinds:
            name, gender = make_name(rng)
            row = dict(name=name, gender=gender, ward=rng.choice(wards), district=district,
                       kind=kind, numbers=[], forms=[], copy_of=None)
            if kind == "valid":
                num = numbers.new()
                form = pick_form(rng, main_form)
                row.update(numbers=[num], forms=[form], phone=VALID_FORMS[form](num))
            elif kind == "two":
                a, b = numbers.new(), numbers.new()
                fa, fb = rng.choice(TWO_NUMBER_FORMS), rng.choice(TWO_NUMBER_FORMS)
                sep = rng.choice(TWO_NUMBER_SEPARATORS)
                row.update(numbers=[a, b], forms=[fa, fb],
                           phone=VALID_FORMS[fa](a) + sep + VALID_FORMS[fb](b))
            else:
                row["phone"] = bad_cell(rng, kind, numbers)
            file_rows.append(row)
        rows[s] = file_rows

    # 2. About 3 % of the people (single valid number) also appear in another district's list,
    #    same name and number, a ward of that district, the number typed the way that office does.
    singles = [(s, i) for s in slugs for i, r in enumerate(rows[s]) if r["kind"] == "valid"]
    n_people = sum(len(rows[s]) for s in slugs)
    cross = rng.sample(singles, round(CROSS_DISTRICT_SHARE * n_people))
    inserts: dict[str, list[dict]] = {s: [] for s in slugs}
    for s, i in cross:
        src = rows[s][i]
        target = rng.choice([t for t in slugs if t != s])
        district, wards = DISTRICTS[target]
        num = src["numbers"][0]
        form = pick_form(rng, FILES[target]["main_form"])
        inserts[target].append(dict(
            name=src["name"], gender=src["gender"], ward=rng.choice(wards), district=district,
            kind="valid", numbers=[num], forms=[form], phone=VALID_FORMS[form](num),
            copy_of="cross_district"))
    for s in slugs:
        for r in inserts[s]:
            rows[s].insert(rng.randrange(len(rows[s]) + 1), r)

    # 3. A handful of people listed twice in the same file, the second time further down.
    originals = [(s, r) for s in slugs for r in rows[s]
                 if r["kind"] == "valid" and r["copy_of"] is None]
    for s, src in rng.sample(originals, IN_FILE_DUPLICATES):
        pos = next(i for i, r in enumerate(rows[s]) if r is src)
        form = src["forms"][0] if rng.random() < 0.5 else pick_form(rng, FILES[s]["main_form"])
        num = src["numbers"][0]
        dup = dict(src, forms=[form], phone=VALID_FORMS[form](num), copy_of="same_file")
        rows[s].insert(rng.randint(pos + 1, len(rows[s])), dup)

    return rows, {"base_counts": base_counts}


# --------------------------------------------------------------------------------------------
# Output.
# --------------------------------------------------------------------------------------------


def render_csv(slug: str, file_rows: list[dict]) -> bytes:
    spec = FILES[slug]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=spec["delimiter"], quoting=csv.QUOTE_MINIMAL,
                   lineterminator="\r\n")
    w.writerow([title for _, title in spec["columns"]])
    for stt, r in enumerate(file_rows, 1):
        name = r["name"].upper() if spec.get("upper_names") else r["name"]
        values = dict(stt=str(stt), name=name, gender=r["gender"], phone=r["phone"],
                      ward=r["ward"], district=r["district"])
        w.writerow([values[key] for key, _ in spec["columns"]])
    return encode(unicodedata.normalize("NFC", buf.getvalue()), spec["encoding"])


def expected(rows: dict[str, list[dict]]) -> dict:
    """Counts only. Duplicates: a valid number already seen earlier, going through the files
    sorted by file name and each file top to bottom (first then second number of a cell)."""
    seen: dict[str, str] = {}  # E.164 -> file where first seen
    files_out = {}
    bad_total = {k: 0 for k in BAD_KINDS}
    dup_same = dup_cross = occurrences = 0
    forms: dict[str, int] = {k: 0 for k in VALID_FORMS}
    for slug in sorted(FILES, key=lambda s: s + ".csv"):
        spec = FILES[slug]
        file_rows = rows[slug]
        f_bad = {k: 0 for k in BAD_KINDS}
        f_dup = f_occ = f_new = 0
        for r in file_rows:
            if r["kind"] in BAD_KINDS:
                f_bad[r["kind"]] += 1
                bad_total[r["kind"]] += 1
            for num, form in zip(r["numbers"], r["forms"]):
                key = e164(num)
                forms[form] += 1
                f_occ += 1
                if key in seen:
                    f_dup += 1
                    if seen[key] == slug:
                        dup_same += 1
                    else:
                        dup_cross += 1
                else:
                    seen[key] = slug
                    f_new += 1
        occurrences += f_occ
        enc = spec["encoding"]
        files_out[slug + ".csv"] = {
            "district": DISTRICTS[slug][0],
            "rows": len(file_rows),
            "encoding": "utf-8" if enc == "utf-8-sig" else enc,
            "bom": enc == "utf-8-sig",
            "delimiter": spec["delimiter"],
            "line_ending": "CRLF",
            "header": [title for _, title in spec["columns"]],
            "has_district_column": any(k == "district" for k, _ in spec["columns"]),
            "rows_single_valid_number": sum(r["kind"] == "valid" for r in file_rows),
            "rows_two_valid_numbers": sum(r["kind"] == "two" for r in file_rows),
            "bad_rows": sum(f_bad.values()),
            "bad_rows_by_kind": {k: v for k, v in f_bad.items() if v},
            "valid_number_occurrences": f_occ,
            "new_distinct_numbers": f_new,
            "duplicate_occurrences": f_dup,
        }
    carriers = {c: 0 for c in CARRIER_PREFIXES}
    for key in seen:
        carriers[PREFIX_CARRIER["0" + key[3:5]]] += 1
    total_rows = sum(len(v) for v in rows.values())
    bad_rows = sum(bad_total.values())
    two_rows = sum(r["kind"] == "two" for v in rows.values() for r in v)
    return {
        "generator": "recipients/generate_cantho_2024.py",
        "seed": SEED,
        "number_convention": "0 + mobile prefix (2 digits) + 555 + 4 digits; "
                             "E.164 +84 PP 555 XXXX",
        "files": files_out,
        "total_files": len(files_out),
        "total_rows": total_rows,
        "rows_with_valid_numbers": total_rows - bad_rows,
        "rows_two_valid_numbers": two_rows,
        "valid_number_occurrences": occurrences,
        "distinct_valid_e164": len(seen),
        "duplicate_occurrences": dup_same + dup_cross,
        "duplicate_occurrences_same_file": dup_same,
        "duplicate_occurrences_other_file": dup_cross,
        "bad_rows": bad_rows,
        "bad_rows_by_kind": bad_total,
        "distinct_valid_e164_by_carrier": carriers,
        "valid_number_occurrences_by_form": forms,
        "definitions": {
            "valid": "a 10-digit mobile number with a 2024 prefix, whatever its typed form "
                     "(lost leading zero, 84/+84/0084/(+84)/+84 (0) prefixes, dots, dashes, "
                     "spaces, trailing .0, leading apostrophe); a cell may hold two, "
                     "separated by '/', ',' or ' - '",
            "bad": "landline (0292 3 555 xxx), too_short, too_long, text, empty, scientific "
                   "(Excel E+ notation, digits not trusted), old_11_digit (pre-2018 01xx "
                   "prefix, not converted)",
            "duplicate_occurrences": "valid numbers already seen earlier, reading the files "
                                     "sorted by file name, each top to bottom, first then "
                                     "second number of a cell; = valid_number_occurrences - "
                                     "distinct_valid_e164",
        },
    }


def main() -> None:
    rows, _ = generate()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for slug in sorted(FILES):
        (OUT_DIR / f"{slug}.csv").write_bytes(render_csv(slug, rows[slug]))
    exp = expected(rows)
    text = json.dumps(exp, ensure_ascii=False, indent=2) + "\n"
    (OUT_DIR / "EXPECTED.json").write_bytes(text.encode("utf-8"))
    print(f"wrote {exp['total_files']} files, {exp['total_rows']} rows, "
          f"{exp['distinct_valid_e164']} distinct valid numbers, "
          f"{exp['duplicate_occurrences']} duplicate occurrences, {exp['bad_rows']} bad rows "
          f"to {OUT_DIR}")


if __name__ == "__main__":
    main()
