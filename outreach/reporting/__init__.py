"""Reporting: delivery reports, the official results report, the privacy purge and the audit log."""
