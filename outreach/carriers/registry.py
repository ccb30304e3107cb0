"""The mobile operators as data (outreach/carriers/data/carriers.json), each with an editable contact point."""

from __future__ import annotations

import functools
import json
import os
import unicodedata
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from outreach.i18n import _

#: Environment variable naming an edited copy of carriers.json (same shape).
CARRIERS_FILE_ENV = "OUTREACH_CARRIERS_FILE"


class CarrierDataError(ValueError):
    """The carriers file cannot be used: names the file and the reason."""


@dataclass(frozen=True)
class CarrierContact:
    """Where a request letter goes: unit name (``{place}`` is replaced by the campaign's
    place), e-mail, phone, postal address; ``verified`` False until checked with the operator."""

    unit: str = ""
    email: str = ""
    phone: str = ""
    address: str = ""
    person: str = ""
    verified: bool = False


@dataclass(frozen=True)
class Carrier:
    """One operator: ``key`` (the name used everywhere, e.g. ``VinaPhone``), brand, company
    name, other spellings (``aliases``) and the contact point."""

    key: str
    brand: str
    company: str
    aliases: tuple[str, ...] = ()
    contact: CarrierContact = field(default_factory=CarrierContact)

    def with_contact(self, **changes: Any) -> "Carrier":
        return replace(self, contact=replace(self.contact, **changes))


def unit_for(unit: str, place: str | None) -> str:
    """A contact unit with its ``{place}`` filled in (``"Viettel {place}"``, ``"Cần Thơ"`` →
    ``"Viettel Cần Thơ"``); without a place, the placeholder and the space before it are
    dropped (``"Viettel"``). A unit without the placeholder is returned stripped."""
    if place:
        return unit.replace("{place}", place).strip()
    return unit.replace(" {place}", "").replace("{place}", "").strip()


def _fold(name: str) -> str:
    s = unicodedata.normalize("NFD", name.strip().casefold()).replace("đ", "d")
    return "".join(ch for ch in s if ch.isalnum())


def _source() -> tuple[str, str]:
    override = os.environ.get(CARRIERS_FILE_ENV)
    if override:
        try:
            return override, Path(override).read_text(encoding="utf-8")
        except OSError as exc:
            raise CarrierDataError(_("{file}: cannot read ({error}); {env} names it").format(
                file=override, error=exc.strerror or exc, env=CARRIERS_FILE_ENV)) from None
    text = resources.files("outreach.carriers").joinpath("data/carriers.json").read_text("utf-8")
    return "outreach/carriers/data/carriers.json", text


@functools.lru_cache(maxsize=4)
def _parse(name: str, text: str) -> tuple[Carrier, ...]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CarrierDataError(_("{file}:{line}: not valid JSON ({error})").format(
            file=name, line=exc.lineno, error=exc.msg)) from None
    items = raw.get("carriers") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise CarrierDataError(_("{file}: needs a non-empty list 'carriers'").format(file=name))
    out: list[Carrier] = []
    for i, item in enumerate(items):
        where = f"{name}: carriers[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise CarrierDataError(_("{where}: needs a 'key' (the operator's name)").format(where=where))
        contact = item.get("contact") or {}
        unknown = set(contact) - set(CarrierContact.__dataclass_fields__)
        if unknown:
            raise CarrierDataError(_("{where}.contact: unknown field {field}").format(
                where=where, field=repr(sorted(unknown)[0])))
        out.append(Carrier(key=item["key"], brand=item.get("brand") or item["key"],
                           company=item.get("company") or item["key"],
                           aliases=tuple(item.get("aliases") or ()),
                           contact=CarrierContact(**{k: unicodedata.normalize("NFC", v)
                                                     if isinstance(v, str) else v
                                                     for k, v in contact.items()})))
    return tuple(out)


def carriers() -> tuple[Carrier, ...]:
    """Every known operator, from ``$OUTREACH_CARRIERS_FILE`` if set, else the packaged list.

    Raises CarrierDataError for an unreadable or malformed file."""
    return _parse(*_source())


def find_carrier(name: str) -> Carrier | None:
    """The operator called ``name`` (its key, brand or an alias; case, accents and punctuation
    ignored: ``vinaphone``, ``VNPT``, ``Wintel`` -> Gmobile), or None."""
    want = _fold(name)
    for c in carriers():
        if want in {_fold(c.key), _fold(c.brand), *(_fold(a) for a in c.aliases)}:
            return c
    return None


def known_names() -> list[str]:
    return [c.key for c in carriers()]
