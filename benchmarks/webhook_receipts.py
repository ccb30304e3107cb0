"""Delivery receipts per second through the webhook application on SQLite.

Run by hand (never a timed test)::

    .venv/bin/python benchmarks/webhook_receipts.py                    # 5000 deliveries
    .venv/bin/python benchmarks/webhook_receipts.py --deliveries 20000 --threads 16 --clients 32

Each delivery gets two signed Twilio callbacks (``sent`` then ``delivered``) at its callback
URL (``/webhooks/twilio/status/<id>/<receipt token>``), so the figure counts every receipt:
signature check (the SDK's ``RequestValidator``), one write transaction shared by the receipts
that arrive together (find the delivery, check its provider id and token, look for a repeat,
move its state forward, append the event; group commit) and the 204, sent only after the
commit. Two measures:

- the Flask test client in one thread: the handler's own cost (one receipt per transaction),
  CPU time of that thread, the client's request building included;
- waitress over real HTTP with ``--threads`` workers (the serving path Twilio meets), loaded
  by a separate process (so it never takes the server's GIL) holding ``--clients``
  connections with one request in flight on each, as that many concurrent callers would.
  The load generator is one thread on a selector sending pre-encoded requests (about 0.05 ms
  CPU per request; a pool of ``requests`` sessions cost about 0.65 ms, most of the second
  core of a 2-core machine). Waitress closes the connection after every 204 (it only keeps a
  connection alive when a response carries ``Content-Length``), so the client opens a new
  connection for each callback, as Twilio would have to: that cost is in the figure. Server
  CPU is this process's CPU time (waitress, the app, SQLite) per receipt.

Every callback must be answered 204 and the ledger is counted afterwards (every delivery
``delivered``, one event per callback), so the rates count receipts applied, not answers.
Goal (issue #6): >= 1,000 receipts/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import multiprocessing as mp
import selectors
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from outreach.ledger.db import Database  # noqa: E402
from outreach.ledger.models import Base, Campaign, Delivery, DeliveryEvent, Recipient, Run  # noqa: E402
from outreach.receipts.receiver import create_app  # noqa: E402
from tests.fakes import waitress_on_loopback  # noqa: E402

TOKEN = "bench-auth-token-0123456789abcdef"
PUBLIC = "https://hooks.example.vn"
T0 = dt.datetime(2024, 7, 30, 1, 0, tzinfo=dt.timezone.utc)


def token(delivery_id: int) -> str:
    """The delivery's receipt token (random at claim in real runs; any 24 hex digits here)."""
    return f"{delivery_id * 2654435761 % 16 ** 24:024x}"


def ledger(path: Path, n: int) -> Database:
    db = Database(f"sqlite:///{path}")
    Base.metadata.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(insert(Campaign).values(
            id="bench", name="Benchmark", source_ref="bench", text="x", text_sha256="0" * 64,
            definition={}, created_at=T0, updated_at=T0))
        conn.execute(insert(Run).values(
            id=1, campaign_id="bench", run_key="launch:1", kind="launch", run_date=T0.date(),
            gateway="twilio", text_sha256="0" * 64, due_at=T0, created_at=T0, options={}))
        conn.execute(insert(Recipient), [{"id": i + 1, "e164": f"+8491{i:07d}", "created_at": T0}
                                         for i in range(n)])
        conn.execute(insert(Delivery), [{
            "id": i + 1, "campaign_id": "bench", "run_id": 1, "recipient_id": i + 1,
            "dedupe_key": "once", "channel": "sms", "gateway": "twilio",
            "address": f"+8491{i:07d}", "status": "sent", "provider_message_id": f"SM{i:032x}",
            "receipt_token": token(i + 1),
            "attempts": 1, "queued_at": T0, "sent_at": T0, "updated_at": T0} for i in range(n)])
    return db


def callbacks(n: int, first: int = 1) -> list[tuple[str, dict[str, str], str]]:
    """(path, form, signature) for ``sent`` then ``delivered`` of deliveries first..first+n-1."""
    validator = RequestValidator(TOKEN)
    out = []
    for status in ("sent", "delivered"):
        for i in range(first - 1, first - 1 + n):
            path = f"/webhooks/twilio/status/{i + 1}/{token(i + 1)}"
            form = {"MessageSid": f"SM{i:032x}", "MessageStatus": status, "SmsStatus": status,
                    "AccountSid": "AC" + "0" * 32, "From": "SYTECANTHO", "To": f"+8491{i:07d}",
                    "ApiVersion": "2010-04-01"}
            out.append((path, form, validator.compute_signature(PUBLIC + path, form)))
    return out


def counts(db: Database) -> tuple[int, int]:
    with db.engine.connect() as conn:
        delivered = conn.execute(select(func.count()).where(Delivery.status == "delivered")
                                 ).scalar_one()
        events = conn.execute(select(func.count()).select_from(DeliveryEvent)).scalar_one()
    return delivered, events


def with_test_client(db: Database, n: int) -> tuple[float, float]:
    """(receipts/s, CPU ms per receipt) through the Flask test client in this thread."""
    client = create_app(db, twilio_auth_token=TOKEN, public_base_url=PUBLIC).test_client()
    work = callbacks(n)
    started, cpu = time.perf_counter(), time.thread_time()
    for path, form, sig in work:
        answer = client.post(path, data=form, headers={"X-Twilio-Signature": sig})
        assert answer.status_code == 204, answer.status_code
    cpu_ms = (time.thread_time() - cpu) / len(work) * 1000
    return len(work) / (time.perf_counter() - started), cpu_ms


def _request(host: str, path: str, form: dict[str, str], signature: str) -> bytes:
    """One status callback as Twilio posts it: HTTP/1.1, keep-alive, a form body."""
    body = urlencode(form).encode("ascii")
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-Twilio-Signature: {signature}\r\n"
            "Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


def post_all(address: tuple[str, int], requests: list[bytes], concurrency: int) -> list[int]:
    """Posts every request over ``concurrency`` connections, one request in flight on each (as
    ``concurrency`` callers would), reading each whole response (status line, headers,
    ``Content-Length`` body) before sending that connection's next request. A connection is
    kept alive unless the server answers ``Connection: close``; then a new one is opened for
    the next request, as any HTTP client must. Returns the status codes in request order.

    One thread and a selector: this costs about 0.05 ms CPU per request, where ``requests``
    sessions in threads cost about 0.65 ms and so took most of the second core of a 2-core
    machine from the server."""
    sel = selectors.DefaultSelector()
    codes = [0] * len(requests)
    queue = iter(range(len(requests)))
    inflight: dict[socket.socket, list[Any]] = {}

    def send_next(sock: socket.socket | None) -> None:
        i = next(queue, None)
        if i is None:
            if sock is not None:
                sel.unregister(sock)
                del inflight[sock]
                sock.close()
            return
        if sock is None:
            sock = socket.create_connection(address, timeout=30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sel.register(sock, selectors.EVENT_READ)
        inflight[sock] = [i, b""]
        sock.sendall(requests[i])

    for _ in range(min(concurrency, len(requests))):
        send_next(None)
    while inflight:
        events = sel.select(timeout=30)
        if not events:
            raise TimeoutError("no answer from the server in 30 s")
        for key, _ in events:
            sock = key.fileobj
            state = inflight[sock]
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed a connection before answering")
            state[1] += data
            end = state[1].find(b"\r\n\r\n")
            if end < 0:
                continue
            head = state[1][:end].decode("latin-1").split("\r\n")
            length, close = 0, False
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value.strip().lower() == "close"
            if len(state[1]) < end + 4 + length:
                continue
            codes[state[0]] = int(head[0].split()[1])
            if close:
                sel.unregister(sock)
                del inflight[sock]
                sock.close()
                send_next(None)
            else:
                send_next(sock)
    sel.close()
    return codes


def _client(address: tuple[str, int], work: list[tuple[str, dict[str, str], str]],
            concurrency: int, conn: Any) -> None:
    """The load generator (a child process): sends back the status codes of ``work``."""
    host = f"{address[0]}:{address[1]}"
    requests = [_request(host, path, form, sig) for path, form, sig in work]
    conn.recv()  # go
    half = len(work) // 2  # all "sent" before any "delivered" of the same delivery
    codes = (post_all(address, requests[:half], concurrency)
             + post_all(address, requests[half:], concurrency))
    conn.send(codes)


def with_waitress(db: Database, n: int, threads: int, clients: int
                  ) -> tuple[float, float, float]:
    """Receipts/s through waitress, the HTTP client in a child process (as Twilio is remote);
    returns (rate, mean receipts per write transaction, server CPU ms per receipt)."""
    app = create_app(db, twilio_auth_token=TOKEN, public_base_url=PUBLIC)
    writer = app.extensions["outreach_receipts"]
    work = callbacks(n, first=n + 1)
    with waitress_on_loopback(app, threads=threads) as port:
        parent, child = mp.Pipe()
        proc = mp.Process(target=_client, args=(("127.0.0.1", port), work, clients, child),
                          daemon=True)
        proc.start()
        try:
            started, cpu = time.perf_counter(), time.process_time()
            parent.send("go")
            codes = parent.recv()
            rate = len(work) / (time.perf_counter() - started)
            cpu_ms = (time.process_time() - cpu) / len(work) * 1000
        finally:
            proc.join(timeout=10)
    assert codes == [204] * len(work), set(codes)
    return rate, len(work) / max(writer.transactions, 1), cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000,
                        help="deliveries per measure (two receipts each)")
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    parser.add_argument("--clients", type=int, default=None,
                        help="concurrent connections of the load generator (default: --threads)")
    args = parser.parse_args()
    logging.getLogger("waitress").setLevel(logging.ERROR)
    n = args.deliveries
    with tempfile.TemporaryDirectory() as tmp:
        db = ledger(Path(tmp) / "bench.db", 2 * n)
        single, single_cpu = with_test_client(db, n)
        served, per_txn, served_cpu = with_waitress(db, n, args.threads,
                                                    args.clients or args.threads)
        delivered, events = counts(db)
        db.dispose()
    print(f"webhook receipts on SQLite (WAL): two measures of {n:,} deliveries x 2 signed "
          f"callbacks ({4 * n:,} callbacks in all)")
    print(f"  Flask test client, 1 thread:    {single:,.0f} receipts/s "
          f"({single_cpu:.2f} ms CPU each: at most {1000 / single_cpu:,.0f}/s on an idle core)")
    print(f"  waitress over HTTP, {args.threads} threads, "
          f"{args.clients or args.threads} connections: {served:,.0f} receipts/s "
          f"({served_cpu:.2f} ms server CPU each: at most {1000 / served_cpu:,.0f}/s; "
          f"{per_txn:.1f} receipts per transaction)")
    print("  goal >= 1,000 receipts/s")
    print(f"  ledger after: {delivered} delivered, {events} events "
          f"(expected {2 * n} and {4 * n})")
    if (delivered, events) != (2 * n, 4 * n):
        sys.exit("the ledger does not hold every receipt: the figures above are void")


if __name__ == "__main__":
    main()
