"""Sending: the send engine and its drivers (operator, scheduler, worker), approvals, leases, rate limits, reconciliation, fallback."""
