"""Administrative units of recipient lists: official names and codes before and after the 1 July 2025 reform."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["REFORM_DATE", "Resolver", "Units"]

#: Since this date Vietnam has 34 provinces and two levels (province, commune): Resolution
#: 202/2025/QH15 of the National Assembly (provinces) and the Standing Committee's resolutions
#: of June 2025 on each province's communes; district-level units ended the same day.
REFORM_DATE: Final = dt.date(2025, 7, 1)

_SPACES: Final = re.compile(r"\s+")
_KEEP_TYPE: Final = ("Thị trấn",)  # "Thị trấn Thới Lai" is not the commune "Xã Thới Lai"


@dataclass(frozen=True, slots=True)
class Units:
    """One row's units. ``district``/``ward``: the names to store and report for the list's
    own era (official short names when recognised, e.g. "Ninh Kiều", "An Hòa",
    "Thị trấn Cờ Đỏ"; as written otherwise); ``province``, ``district_code`` and ``ward_code``:
    official pre-2025 province name and General Statistics Office codes; ``new_province``,
    ``new_ward``, ``new_ward_code``: the units since :data:`REFORM_DATE` (full official names,
    "Thành phố Cần Thơ", "Phường Cái Khế"). Unknown parts are None."""

    district: str | None
    ward: str | None
    province: str | None = None
    district_code: str | None = None
    ward_code: str | None = None
    new_province: str | None = None
    new_ward: str | None = None
    new_ward_code: str | None = None


def _clean(value: str | None) -> str | None:
    if not value:
        return None
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", value).replace(",", " ")).strip()
    return text or None


_TYPE_WORDS: Final = re.compile(r"^(?:quan|q|huyen|h|thi xa|tx|thanh pho|tp|phuong|p|xa|x|thi tran|tt"
                                r"|dac khu|tinh)\s+")


def _key(name: str) -> str:
    """"P. An Hoà" and "Phường An Hòa" and "an hoa" → "an hoa": no type word, case, accents
    (old and new tone placement decompose alike) or punctuation."""
    from outreach.input.listfiles import _header_key

    return _TYPE_WORDS.sub("", _header_key(name))


def _same(written: str, official: str | None) -> bool:
    """The library matches loosely; a unit counts only when its name is the one written."""
    return official is not None and _key(written) == _key(official)


def _short_ward(u: Any) -> str | None:
    if u.ward is None:
        return None
    short = _SPACES.sub(" ", u.short_ward or u.ward).strip()
    if (getattr(u, "ward_type", None) in _KEEP_TYPE) or short.isdigit():
        return _SPACES.sub(" ", u.ward).strip()
    return short


class UnknownProvince(ValueError):
    """A ``province`` given by the operator that is no Vietnamese province, before or after the
    1 July 2025 reform."""


def official_province(name: str) -> str:
    """The official name of the province written ``name`` ("Cần Thơ", "TP. Cần Thơ", "can tho"),
    in the pre-2025 units or the current ones (data of ``vietnamadminunits``).

    Raises :class:`UnknownProvince` when neither knows it: a mistyped ``--province`` would
    otherwise leave every district of the list unresolved, silently."""
    import vietnamadminunits as lib

    written = _clean(name) or ""
    for mode in ("LEGACY", "FROM_2025"):
        try:
            u = lib.parse_address(written, mode=mode, keep_street=False, level=1)
        except Exception:  # noqa: BLE001 - the library raises several types on unknown names
            continue
        if u is not None and u.province and (_same(written, u.short_province)
                                             or _same(written, u.province)):
            return str(u.province)
    raise UnknownProvince(written)


class Resolver:
    """Names as lists write them ("P. An Hoà", "TT. Cờ Đỏ", "Ninh Kieu") → official units,
    with the maintained data of the PyPI package ``vietnamadminunits`` (pre-2025 units, current
    units and the official old → new conversion table; offline: no street is ever passed, so
    it never geocodes). Results are cached per (province, district, ward).

    ``province``: the province of lists that have no province column; without it the province
    is found from a district name unique in the country, or else taken from the rows already
    resolved in this import. ``unknown`` counts the names not found, as (kind, name) → rows:
    they are stored as written, never replaced by a guess."""

    def __init__(self, province: str | None = None) -> None:
        self.province = _clean(province)
        self.unknown: Counter[tuple[str, str]] = Counter()
        self._cache: dict[tuple[str | None, str | None, str | None], Units] = {}
        self._uncertain: dict[Any, Units] = {}
        self._provinces: Counter[str] = Counter()
        self._lib: Any = None

    def _api(self) -> Any:
        if self._lib is None:
            import vietnamadminunits  # imported here: 2 s, and only lists with units need it

            self._lib = vietnamadminunits
        return self._lib

    def resolve(self, province: str | None, district: str | None, ward: str | None) -> Units:
        """Units of one row (``province`` from the row, if the list has that column). Every
        row whose district or ward is not found counts in :attr:`unknown`."""
        key = (province, district, ward)
        units = self._cache.get(key)
        if units is None:
            if not (district or ward):
                return Units(None, None)
            prov = _clean(province) or self.province
            # a name not found while the province is still a guess is looked up again only
            # when the guesses change (the provinces most seen so far), not on every row
            guess_key = None if prov else (key, tuple(p for p, _ in self._provinces.most_common(2)))
            units = self._uncertain.get(guess_key) if guess_key else None
            if units is None:
                units, certain = self._resolve(prov, _clean(district), _clean(ward))
                if certain:
                    self._cache[key] = units
                elif guess_key is not None:
                    self._uncertain[guess_key] = units
        if district and units.district_code is None:
            self.unknown["district", district] += 1
        elif ward and units.ward_code is None and units.new_ward_code is None:
            self.unknown["ward", ward] += 1
        return units

    def _parse(self, text: str, mode: str) -> Any:
        lib = self._api()
        try:
            return lib.parse_address(text, mode=mode, keep_street=False)
        except Exception:  # the library raises ValueError/KeyError/IndexError on unknown names
            return None

    def _resolve(self, province: str | None, district: str | None,
                 ward: str | None) -> tuple[Units, bool]:
        written = Units(district, ward)
        guesses = [province] if province else [None, *[p for p, _ in self._provinces.most_common(2)]]
        for prov in guesses:
            if district:
                u = self._parse(", ".join(p for p in (ward or "", district, prov or "") if p is not None),
                                "LEGACY")
                if (u is None or u.district_code is None or not _same(district, u.short_district)
                        or (prov is not None and not _same(prov, u.short_province))):
                    continue
                if ward and u.ward_code is not None and not _same(ward, u.short_ward):
                    u = None
                    continue
                self._provinces[u.province] += 1
                old_ward = _short_ward(u) if ward else None
                new = None
                if u.ward_code is not None:
                    try:
                        new = self._api().convert_address(f"{u.ward}, {u.district}, {u.province}")
                    except Exception:
                        new = None
                units = Units(
                    _SPACES.sub(" ", u.short_district or u.district).strip(),
                    old_ward if u.ward_code is not None else ward,
                    u.province, u.district_code, u.ward_code,
                    getattr(new, "province", None), getattr(new, "ward", None),
                    getattr(new, "ward_code", None))
                return units, True
            if ward and prov:
                u = self._parse(f"{ward}, {prov}", "FROM_2025")
                if (u is not None and u.ward_code is not None and _same(ward, u.short_ward)
                        and _same(prov, u.short_province)):
                    self._provinces[u.province] += 1
                    return Units(None, _short_ward(u), None, None, None, u.province, u.ward,
                                 u.ward_code), True
        # not found: cached only when the province was known (a later row may teach it)
        return written, province is not None
