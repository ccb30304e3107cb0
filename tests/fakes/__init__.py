"""Loopback fakes of the providers (127.0.0.1 only) so tests exercise the real SDKs over HTTP."""
