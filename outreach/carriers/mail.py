"""Sending the request letters by e-mail over SMTP (standard library smtplib), configured from the environment."""

from __future__ import annotations

import mimetypes
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from outreach.i18n import _

#: Environment variables (credentials are read here only, never printed or logged).
ENV = {"host": "OUTREACH_SMTP_HOST", "port": "OUTREACH_SMTP_PORT", "user": "OUTREACH_SMTP_USER",
       "password": "OUTREACH_SMTP_PASSWORD", "sender": "OUTREACH_SMTP_FROM",
       "security": "OUTREACH_SMTP_SECURITY", "timeout": "OUTREACH_SMTP_TIMEOUT"}


class MailError(Exception):
    """E-mail not configured, or the server refused: one line, never the password."""


@dataclass(frozen=True)
class SmtpConfig:
    """``security``: ``starttls`` (default, port 587), ``ssl`` (port 465) or ``none`` (a relay on
    the local network or 127.0.0.1; port 25). ``timeout`` in seconds."""

    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    security: str = "starttls"
    timeout: float = 30.0

    def __repr__(self) -> str:  # never show the password
        return (f"SmtpConfig(host={self.host!r}, port={self.port}, sender={self.sender!r}, "
                f"user={self.user!r}, security={self.security!r})")


def config_from_env(env: os._Environ[str] | dict[str, str] | None = None) -> SmtpConfig:
    """Read :data:`ENV`. Raises MailError naming the missing or bad variable."""
    env = os.environ if env is None else env
    host = env.get(ENV["host"], "").strip()
    sender = env.get(ENV["sender"], "").strip()
    if not host or not sender:
        raise MailError(_("e-mail is not configured: set {host} and {sender} "
                          "(and {user}/{password} if the server needs a login)").format(
            host=ENV["host"], sender=ENV["sender"], user=ENV["user"], password=ENV["password"]))
    security = env.get(ENV["security"], "starttls").strip().lower() or "starttls"
    if security not in ("starttls", "ssl", "none"):
        raise MailError(_("{name} must be starttls, ssl or none, got {value}").format(
            name=ENV["security"], value=repr(security)))
    default_port = {"starttls": 587, "ssl": 465, "none": 25}[security]
    try:
        port = int(env.get(ENV["port"], "") or default_port)
        timeout = float(env.get(ENV["timeout"], "") or 30)
    except ValueError:
        raise MailError(_("{port} and {timeout} must be numbers").format(
            port=ENV["port"], timeout=ENV["timeout"])) from None
    user = env.get(ENV["user"]) or None
    password = env.get(ENV["password"]) or None
    if user and not password:
        raise MailError(_("{user} is set but {password} is not").format(
            user=ENV["user"], password=ENV["password"]))
    return SmtpConfig(host=host, port=port, sender=sender, user=user, password=password,
                      security=security, timeout=timeout)


def build(cfg: SmtpConfig, to: str, subject: str, body: str, attachments: list[Path],
          cc: list[str] | None = None) -> EmailMessage:
    """One message, UTF-8 text body, each file attached with its MIME type."""
    msg = EmailMessage()
    msg["From"] = cfg.sender
    msg["To"] = to
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=cfg.sender.rsplit("@", 1)[-1].strip(">") or None)
    msg.set_content(body, charset="utf-8")
    for path in attachments:
        ctype, _ = mimetypes.guess_type(path.name)
        if path.suffix.lower() == ".docx":
            ctype = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        elif path.suffix.lower() == ".xlsx":
            ctype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        maintype, subtype = (ctype or "application/octet-stream").split("/", 1)
        msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype,
                           filename=path.name)
    return msg


def send(cfg: SmtpConfig, messages: list[EmailMessage]) -> None:
    """Send every message over one connection. Raises MailError (host, port and the server's
    answer; never credentials) when the connection, the login or a recipient is refused."""
    try:
        if cfg.security == "ssl":
            server: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                                    context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        with server:
            server.ehlo()
            if cfg.security == "starttls":
                server.starttls(context=ssl.create_default_context())
                server.ehlo()
            if cfg.user:
                server.login(cfg.user, cfg.password or "")
            for msg in messages:
                server.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(_("SMTP {host}:{port}: login refused for {user} ({code})").format(
            host=cfg.host, port=cfg.port, user=cfg.user, code=exc.smtp_code)) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError(_("SMTP {host}:{port}: recipient refused: {recipients}").format(
            host=cfg.host, port=cfg.port, recipients=", ".join(exc.recipients))) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise MailError(_("SMTP {host}:{port}: {error} (set {name}=none or ssl "
                          "if the server has no STARTTLS)").format(
            host=cfg.host, port=cfg.port, error=exc, name=ENV["security"])) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"SMTP {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}") from None
