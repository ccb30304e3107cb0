"""Delivery receipts: the webhook receiver, the one writer that applies them through the ledger, and polling."""
