"""Carrier broadcasts: the written request to each mobile operator, its follow-up and the operators' reported figures."""

from __future__ import annotations

from outreach.carriers.registry import Carrier, CarrierContact, carriers, find_carrier

__all__ = ["Carrier", "CarrierContact", "carriers", "find_carrier"]
