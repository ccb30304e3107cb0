"""How early `outreach webhooks serve` cuts off a slow sender of a huge body.

Run by hand (never a timed test)::

    .venv/bin/python benchmarks/webhook_limits.py             # 50 MB announced / streamed
    .venv/bin/python benchmarks/webhook_limits.py --mb 10

Starts the real command (``python -m outreach webhooks serve --no-twilio``, waitress) on
127.0.0.1 with a throwaway SQLite database, then plays a slow sender: request headers, then
the body 8 KiB at a time with a 2 ms pause, reading any answer between pieces. Once with
``Content-Length`` (the server should answer 413 at the headers) and once chunked (413 once
the body passes the limit). Prints, for each, the body bytes sent before the server answered
or closed, the time that took, and the status line; then how long an idle half-sent request
is kept open (``--timeout``, here 2 s). Point ``PYTHONPATH`` at another checkout to compare.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

PIECE = 8192


def slow(port: int, total: int, chunked: bool) -> tuple[int, float, bytes]:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /webhooks/twilio/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/x-www-form-urlencoded\r\n"
              + (b"Transfer-Encoding: chunked\r\n\r\n" if chunked
                 else f"Content-Length: {total}\r\n\r\n".encode()))
    s.settimeout(0.01)
    sent, answer, t0 = 0, b"", time.monotonic()
    try:
        while sent < total:
            body = b"a" * PIECE
            s.sendall(b"%x\r\n%s\r\n" % (PIECE, body) if chunked else body)
            sent += PIECE
            try:
                data = s.recv(65536)
            except socket.timeout:
                time.sleep(0.002)
                continue
            answer += data
            if not data or answer:
                break
        if chunked and sent >= total:
            s.sendall(b"0\r\n\r\n")
        s.settimeout(30)
        if not answer:
            answer = s.recv(200)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    return sent, time.monotonic() - t0, answer.split(b"\r\n", 1)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=50, help="body size announced / streamed, MB")
    args = ap.parse_args()
    total = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OUTREACH_HOME=tmp)
        env.pop("OUTREACH_DATABASE_URL", None)
        subprocess.run([sys.executable, "-m", "outreach", "db", "upgrade"], env=env, check=True,
                       capture_output=True)
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            port = sk.getsockname()[1]
        cmd = [sys.executable, "-m", "outreach", "webhooks", "serve", "--no-twilio", "--port",
               str(port)]
        help_text = subprocess.run(cmd[:5] + ["--help"], env=env, capture_output=True,
                                   text=True).stdout
        if "--timeout" in help_text:
            cmd += ["--timeout", "2"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            for chunked in (False, True):
                sent, secs, status = slow(port, total, chunked)
                print(f"{'chunked' if chunked else 'Content-Length'} {args.mb} MB: "
                      f"{sent:,} body bytes sent in {secs:.2f} s, then "
                      f"{status.decode(errors='replace') or 'connection closed'}")
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /webhooks/twilio/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.settimeout(200)
            t0 = time.monotonic()
            s.recv(100)
            print(f"idle half-sent request closed after {time.monotonic() - t0:.1f} s")
            s.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
