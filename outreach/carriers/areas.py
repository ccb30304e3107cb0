"""Broadcast areas by official administrative code (provinces, districts, communes), read from vietnamadminunits."""

from __future__ import annotations

import datetime as dt
import functools
import unicodedata
from dataclasses import dataclass

#: Two-level local government (no district level) from this day on: Resolution 202/2025/QH15
#: (34 provinces) and the Law on Organisation of Local Government 2025.
TWO_LEVEL_FROM = dt.date(2025, 7, 1)

LEVEL_VI = {"province": "tỉnh/thành phố", "district": "quận/huyện", "commune": "xã/phường/thị trấn"}


@dataclass(frozen=True)
class Area:
    """One administrative unit: ``code`` (the official code of Decision 124/2004/QĐ-TTg as
    kept by the General Statistics Office: 2 digits for a province, 3 for a district, 5 for a
    commune), ``name`` with its type (``Quận Ninh Kiều``), ``level`` (province, district or
    commune), and the units above it (``province``, ``district``: names, with codes)."""

    code: str
    name: str
    level: str
    province_code: str
    province: str
    district_code: str = ""
    district: str = ""

    def label(self) -> str:
        parts = [self.name] + [p for p in (self.district, self.province)
                               if p and p != self.name]
        return ", ".join(parts)


class AreaError(ValueError):
    """An area code that names no administrative unit in force on the given day."""


def units_for(day: dt.date) -> str:
    """``"2024"`` (63 provinces, three levels) before 1 July 2025, ``"2025"`` (34 provinces,
    no districts) from then on."""
    return "2025" if day >= TWO_LEVEL_FROM else "2024"


@functools.lru_cache(maxsize=2)
def _units(edition: str) -> dict[str, Area]:
    # imported here: loading the package's tables takes about a second
    from vietnamadminunits.database import query

    out: dict[str, Area] = {}
    if edition == "2024":
        rows = query("SELECT DISTINCT province, provinceCode, district, districtCode, ward, "
                     "wardCode FROM admin_units_legacy")
        for r in rows:
            p, pc = _nfc(r["province"]), str(r["provinceCode"])
            d, dc = _nfc(r["district"]), str(r["districtCode"])
            out.setdefault(pc, Area(pc, p, "province", pc, p))
            out.setdefault(dc, Area(dc, d, "district", pc, p))
            if r["wardCode"]:
                wc = str(r["wardCode"])
                out.setdefault(wc, Area(wc, _nfc(r["ward"]), "commune", pc, p, dc, d))
    else:
        rows = query("SELECT DISTINCT province, provinceCode, ward, wardCode FROM admin_units")
        for r in rows:
            p, pc = _nfc(r["province"]), str(r["provinceCode"])
            out.setdefault(pc, Area(pc, p, "province", pc, p))
            if r["wardCode"]:
                wc = str(r["wardCode"])
                out.setdefault(wc, Area(wc, _nfc(r["ward"]), "commune", pc, p))
    return out


def _nfc(s: str | None) -> str:
    return unicodedata.normalize("NFC", s or "")


def lookup(code: str, day: dt.date) -> Area:
    """The unit with this code in force on ``day`` (see :func:`units_for`).

    Raises AreaError when no unit has that code (``"92"`` is Thành phố Cần Thơ both before and
    after 2025; ``"916"`` Quận Ninh Kiều exists only before 1 July 2025)."""
    code = str(code).strip()
    edition = units_for(day)
    area = _units(edition).get(code)
    if area is None:
        from outreach.i18n import _, day as _day

        units = _("units of 1 July 2025 on") if edition == "2025" else _("units before 1 July 2025")
        raise AreaError(_("no administrative unit has the code {code} on {day} ({units})").format(
            code=repr(code), day=_day(day), units=units))
    return area


def children(area: Area, day: dt.date) -> list[Area]:
    """The units directly below ``area`` (districts of a province before 2025, communes of a
    district; communes of a province from 2025), ordered by code."""
    units = _units(units_for(day)).values()
    if area.level == "province":
        level = "district" if units_for(day) == "2024" else "commune"
        found = [u for u in units if u.level == level and u.province_code == area.code]
    elif area.level == "district":
        found = [u for u in units if u.level == "commune" and u.district_code == area.code]
    else:
        found = []
    return sorted(found, key=lambda u: u.code)


def _fold(s: str) -> str:
    s = unicodedata.normalize("NFD", s.casefold()).replace("đ", "d")
    return "".join(ch for ch in s if ch.isalnum())


_PREFIXES = ("thanhpho", "tinh", "quan", "huyen", "thixa", "phuong", "xa", "thitran", "tp", "q", "h")


def _bare(s: str) -> str:
    f = _fold(s)
    for p in _PREFIXES:
        if f.startswith(p) and len(f) > len(p) + 1:
            return f[len(p):]
    return f


def within(area: Area, scope: Area) -> bool:
    """True if ``area`` is ``scope`` or lies inside it."""
    return (area.code == scope.code or (scope.level == "province" and area.province_code == scope.code)
            or (scope.level == "district" and area.district_code == scope.code))


def find(text: str, scopes: list[Area], day: dt.date) -> Area | None:
    """The unit a carrier's report names: its code, or its name with or without the type
    (``Ninh Kiều``, ``Q. Ninh Kiều``, ``quan ninh kieu``) among the units inside ``scopes``;
    None when nothing or more than one unit matches."""
    text = text.strip()
    if text.isdigit():
        try:
            a = lookup(text, day)
        except AreaError:
            return None
        return a if any(within(a, s) for s in scopes) else None
    want_full, want_bare = _fold(text), _bare(text)
    found = []
    for u in _units(units_for(day)).values():
        if not any(within(u, s) for s in scopes):
            continue
        if _fold(u.name) == want_full or _bare(u.name) == want_bare:
            found.append(u)
    # a district and a commune may share a name (Thới Lai): prefer the higher level
    for level in ("province", "district", "commune"):
        at = [u for u in found if u.level == level]
        if len(at) == 1:
            return at[0]
        if len(at) > 1:
            return None
    return None
