"""Brandname SMS ("tin nhắn thương hiệu", customer-care class) through Vietnamese HTTP aggregators.

:mod:`.base` holds what every HTTP brandname aggregator shares (options from the environment,
the idempotent ``RequestId``, the retry of a maybe-sent request under that id, the code table,
signed callback URLs, polling); one small module per aggregator holds its request shapes and
its JSON code table: :mod:`.esms` (eSMS.vn, gateway names ``esms`` and ``esms-sandbox``).
"""
