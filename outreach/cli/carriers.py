"""``outreach carriers ...``: request letters to the mobile operators, their follow-up and their reported figures."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from outreach import i18n
from outreach.cli import OUT_FOLDER, Ctx, console, err_console, pass_ctx
from outreach.i18n import _, ngettext


class CarrierCommandError(click.ClickException):
    """One line on stderr, exit 1 (bad input: file, line, field or reason)."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        from rich.markup import escape

        err_console.print(_("[red]error:[/red] {message}").format(message=escape(self.message)),
                          markup=True, soft_wrap=True)


def _spec(c: Ctx, ref: str) -> Any:
    from outreach.cli.campaign import load_spec

    from outreach.carriers.registry import CarrierDataError

    try:
        spec = load_spec(ref, c)
    except CarrierDataError as exc:
        raise CarrierCommandError(str(exc)) from None
    if spec.carriers is None:
        raise CarrierCommandError(_("{file}: no [carriers] section: add one naming the "
                                    "operators, the area, the dates and deadlines (see "
                                    "campaigns/cantho-2024-pcmbn.toml)").format(file=spec.file))
    return spec


def _day(value: str | None, name: str) -> dt.date:
    from outreach.carriers.results import parse_day
    from outreach.clock import VN_TZ

    if not value:
        return dt.datetime.now(VN_TZ).date()
    d = parse_day(value)
    if d is None:
        raise click.BadParameter(_("{value} is not a date (YYYY-MM-DD or DD/MM/YYYY)").format(
            value=repr(value)), param_hint=name)
    return d


def _carrier(spec: Any, name: str) -> str:
    from outreach.carriers import registry

    c = registry.find_carrier(name)
    if c is None:
        raise CarrierCommandError(_("unknown operator {name} (known: {known})").format(
            name=repr(name), known=", ".join(registry.known_names())))
    if c.key not in spec.carriers.operators:
        raise CarrierCommandError(_("{file}: {carrier} is not among carriers.operators "
                                    "({operators})").format(
            file=spec.file, carrier=c.key, operators=", ".join(spec.carriers.operators)))
    return c.key


def _sync(c: Ctx, conn: Any, spec: Any) -> None:
    from outreach.ledger import runs
    from outreach.carriers import ledger

    now = dt.datetime.now(dt.timezone.utc)
    runs.sync_campaign(conn, spec, now=now)
    short = spec.carriers.short_text
    ledger.ensure(conn, spec.id, list(spec.carriers.operators), text_sha256=spec.text_sha256,
                  short_sha256=short.sha256 if short else None, now=now)


@click.group()
def carriers() -> None:
    """Ask the mobile operators to broadcast a campaign's text (plan 126/KH-UBND II.6.b:
    "phối hợp với các doanh nghiệp viễn thông di động nhắn tin"), follow each request up, and
    record the figures they report (subscribers messaged: counts, never per-person reach)."""


@carriers.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def list_carriers(fmt: str) -> None:
    """The known operators and their contact points (outreach/carriers/data/carriers.json, or
    the file OUTREACH_CARRIERS_FILE names)."""
    from dataclasses import asdict

    from outreach.carriers import registry

    try:
        items = [asdict(x) for x in registry.carriers()]
    except registry.CarrierDataError as exc:
        raise CarrierCommandError(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    place = _("<place>")
    t = Table(title=_("Mobile operators"))
    for col in (_("key"), _("company"), _("other names"), _("contact unit"), _("e-mail"),
                _("verified")):
        t.add_column(col)
    for x in items:
        ct = x["contact"]
        t.add_row(x["key"], x["company"], ", ".join(x["aliases"]),
                  registry.unit_for(ct["unit"], place), ct["email"] or "–",
                  _("yes") if ct["verified"] else _("no"))
    console.print(t)
    if any("{place}" in x["contact"]["unit"] for x in items):
        console.print(_("{place}: the campaign's place (carriers.letter.place), written into "
                        "each request letter").format(place=place))


@carriers.command("request")
@click.argument("campaign")
@click.option("--carrier", "only", multiple=True, help="Only this operator (repeatable).")
@click.option("--out", "out_dir", type=OUT_FOLDER, default=None,
              help="Folder for the files, created when missing (its parent folder must exist; default $OUTREACH_HOME/carriers/CAMPAIGN).")
@click.option("--number", help="The letter number (Số: …), e.g. '1234/STTTT-TTBCXB'; default "
              "carriers.letter.number.")
@click.option("--date", "letter_date", help="The letter's date (default carriers.letter.date, "
              "else today).")
@click.option("--no-pdf", is_flag=True, help="Write no PDF even when WeasyPrint is there.")
@click.option("--email", "email", is_flag=True, help="Also e-mail each letter with its files to "
              "the operator's contact (SMTP from OUTREACH_SMTP_*), and mark it requested.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def request(c: Ctx, campaign: str, only: tuple[str, ...], out_dir: str | None,
            number: str | None, letter_date: str | None, no_pdf: bool, email: bool,
            fmt: str) -> None:
    """Write, for each operator, the request letter (công văn, Decree 30/2020 layout) as DOCX
    and PDF, and the sheet (CSV, XLSX) with the prescribed text byte for byte, its unaccented
    GSM-7 variant, their lengths and segments, the area with codes, dates, hours, deadlines and
    the Department's contact. The XLSX has the results form the operator fills in."""
    from outreach import config
    from outreach.carriers import ledger, letters

    spec = _spec(c, campaign)
    plan = spec.carriers
    keys = [_carrier(spec, n) for n in only] if only else list(plan.operators)
    d = _day(letter_date, "--date") if letter_date else None
    target = Path(out_dir) if out_dir else config.home_dir() / "carriers" / spec.id
    pdf = not no_pdf and letters.pdf_available()
    options = letters.text_options(spec)
    written: list[dict[str, Any]] = []
    for key in keys:
        ctx = letters.context(spec, key, number=number, letter_date=d)
        try:
            paths = letters.write_all(ctx, target, pdf=pdf)
        except letters.LetterError as exc:
            raise CarrierCommandError(str(exc)) from None
        written.append({"carrier": key, "to": ctx["to"], "email": ctx["contact_to"].email,
                        "number": ctx["number"], "date": ctx["date"].isoformat(),
                        "files": [str(p) for p in paths]})
    with c.db.engine.begin() as conn:
        _sync(c, conn, spec)
        for w in written:
            ledger.record_letter(conn, spec.id, w["carrier"], number=w["number"],
                                 letter_date=dt.date.fromisoformat(w["date"]), files=w["files"],
                                 text_sha256=spec.text_sha256,
                                 short_sha256=plan.short_text.sha256 if plan.short_text else None,
                                 operator=c.operator)
    first = written[0] if written else None
    if first and dt.date.fromisoformat(first["date"]) > plan.reply_by:
        err_console.print("[yellow]" + _("note: the letter is dated {date}, after the reply "
                          "deadline {deadline} (carriers.reply_by): give --date or change "
                          "carriers.letter.date").format(
                              date=i18n.day(dt.date.fromisoformat(first["date"])),
                              deadline=i18n.day(plan.reply_by)) + "[/yellow]")
    sent_to: list[str] = []
    if email:
        sent_to = _email(c, spec, written)
    if fmt == "json":
        click.echo(json.dumps({"campaign": spec.id, "options": options, "letters": written,
                               "pdf": pdf, "emailed": sent_to}, ensure_ascii=False, indent=2))
        return
    console.print(ngettext("[bold]{campaign}[/bold]: request letters for {n} operator in "
                           "{folder}", "[bold]{campaign}[/bold]: request letters for {n} "
                           "operators in {folder}", len(written)).format(
        campaign=spec.id, n=len(written), folder=target))
    t = Table(title=_("Texts offered to the operators"))
    for col in (_("option"), _("encoding"), _("characters"), _("segments"), _("one SMS ≤ 160"),
                "SHA-256"):
        t.add_column(col)
    for o in options:
        t.add_row(_(letters.OPTION_LABELS.get(o["option"], o["option"])), o["encoding"],
                  str(o["characters"]), str(o["segments"]),
                  _("yes") if o["fits_one"] else _("no"), o["sha256"][:16] + "…")
    console.print(t)
    p = options[0]
    if not any(o["fits_one"] for o in options):
        console.print(_(
            "[yellow]note:[/yellow] operators usually broadcast one unaccented SMS of at most "
            "160 characters; the prescribed text is {characters} characters "
            "({segments} SMS with diacritics, {unaccented} unaccented). The "
            "letter offers the unaccented text in 2 SMS; a shorter text can be offered only once "
            "approved (\\[carriers.short_text] with its hash and approval).").format(
                characters=p["characters"], segments=p["segments"],
                unaccented=options[1]["segments"]))
    for w in written:
        files = ", ".join(Path(f).name for f in w["files"])
        console.print(f"  {w['carrier']}: {w['to']} – {files}")
    if not pdf and not no_pdf:
        console.print(_("note: no PDF (WeasyPrint is not installed): print the DOCX to PDF, or "
                        "`pip install 'outreach\\[pdf]'`"))  # "\\[": text, not rich markup
    if not email:
        console.print(_("next: send the letters, then `{command}` (or re-run with "
                        "--email)").format(command=mark_command(spec.id, written)))


def mark_command(campaign_id: str, written: list[dict[str, Any]]) -> str:
    """The ``outreach carriers mark … requested`` command for the letters just written, with
    the values known: the operator when there is one letter, the letter number when every
    letter has the same full one (not the clerk's blank ``      /STTTT-TTBCXB``); the others as
    placeholders in the interface language (``NAME``, ``N``, ``DATE``: ``TÊN``, ``SỐ``,
    ``NGÀY``). The day is when the letters went out: always a placeholder."""
    import shlex

    carriers = {w["carrier"] for w in written}
    numbers = {(w["number"] or "").strip() for w in written}
    number = numbers.pop() if len(numbers) == 1 else ""
    known = bool(number) and not number.startswith("/")
    return "outreach carriers mark {campaign} --carrier {carrier} requested --number {number} " \
        "--date {date}".format(
            campaign=campaign_id,
            carrier=shlex.quote(carriers.pop()) if len(carriers) == 1
            else i18n.label(i18n.N_("placeholder|NAME")),
            number=shlex.quote(number) if known else i18n.label(i18n.N_("placeholder|N")),
            date=i18n.label(i18n.N_("placeholder|DATE")))


def _email(c: Ctx, spec: Any, written: list[dict[str, Any]]) -> list[str]:
    from outreach.carriers import ledger, mail
    from outreach.clock import VN_TZ

    try:
        cfg = mail.config_from_env()
    except mail.MailError as exc:
        raise CarrierCommandError(str(exc)) from None
    plan = spec.carriers
    messages, targets = [], []
    for w in written:
        if not w["email"]:
            err_console.print("[yellow]" + _("{carrier}: no e-mail address for {to} (set "
                              "\\[carriers.contacts.{carrier}] email): send it by post or "
                              "by hand, then mark it requested").format(
                                  carrier=w["carrier"], to=w["to"]) + "[/yellow]")
            continue
        subject = f"Đề nghị phối hợp nhắn tin tuyên truyền – {spec.source.document} – {w['carrier']}"
        body = (f"Kính gửi: {w['to']}\n\n"
                f"Sở Thông tin và Truyền thông gửi công văn số {w['number'].strip()} ngày "
                f"{w['date']} đề nghị phối hợp nhắn tin tuyên truyền (tệp đính kèm: công văn, "
                f"nội dung tin nhắn và mẫu báo cáo kết quả).\n"
                f"Đề nghị xác nhận trước ngày {plan.reply_by:%d/%m/%Y} và báo cáo kết quả trước "
                f"ngày {plan.results_by:%d/%m/%Y}.\n\n"
                + (f"Đầu mối: {plan.contact.name} – {plan.contact.phone} – {plan.contact.email}\n"
                   if plan.contact.name else ""))
        messages.append(mail.build(cfg, w["email"], subject, body,
                                   [Path(f) for f in w["files"]],
                                   cc=[plan.contact.email] if plan.contact.email else None))
        targets.append(w)
    if not messages:
        return []
    try:
        mail.send(cfg, messages)
    except mail.MailError as exc:
        raise CarrierCommandError(str(exc)) from None
    today = dt.datetime.now(VN_TZ).date()
    with c.db.engine.begin() as conn:
        for w in targets:
            req = ledger.get(conn, spec.id, w["carrier"])
            if ledger.ORDER.index(req.status) <= ledger.ORDER.index(ledger.REQUESTED) \
                    if req.status in ledger.ORDER else False:
                ledger.mark(conn, spec.id, w["carrier"], ledger.REQUESTED, day=today,
                            number=w["number"], by="email", operator=c.operator)
    for w in targets:
        console.print("  " + ngettext("e-mailed {carrier} ({email}) with {n} file",
                                      "e-mailed {carrier} ({email}) with {n} files",
                                      len(w["files"])).format(
            carrier=w["carrier"], email=w["email"], n=len(w["files"])))
    return [w["carrier"] for w in targets]


@carriers.command("mark")
@click.argument("campaign")
@click.option("--carrier", "name", required=True, help="The operator.")
@click.argument("status", type=click.Choice(["requested", "confirmed", "broadcast", "declined"]))
@click.option("--date", "day", help="When (default today, Asia/Ho_Chi_Minh).")
@click.option("--number", help="The letter number as sent (requested).")
@click.option("--by", "by", type=click.Choice(["post", "email", "hand", "fax", "portal"]),
              help="How the letter went (requested).")
@click.option("--note", help="Free text: the operator's answer, brandname, chosen option...")
@pass_ctx
def mark(c: Ctx, campaign: str, name: str, status: str, day: str | None, number: str | None,
         by: str | None, note: str | None) -> None:
    """Record a step of one operator's request: requested (the letter went out), confirmed
    (the operator agreed), broadcast (it says it sent), declined. Forward only; audited."""
    from outreach.carriers import ledger

    spec = _spec(c, campaign)
    key = _carrier(spec, name)
    when = _day(day, "--date")
    with c.db.engine.begin() as conn:
        _sync(c, conn, spec)
        try:
            old, new = ledger.mark(conn, spec.id, key, status, day=when, note=note, number=number,
                                   by=by, operator=c.operator)
        except ledger.CarrierError as exc:
            raise CarrierCommandError(str(exc)) from None
    console.print(_("{campaign}: {carrier} {old} → {new} on {day}").format(
        campaign=spec.id, carrier=key, old=ledger.status_label(old),
        new=ledger.status_label(new), day=i18n.day(when)))


@carriers.command("status")
@click.argument("campaign")
@click.option("--today", "today", help="Check the deadlines as of this day (default today).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def status(c: Ctx, campaign: str, today: str | None, fmt: str) -> None:
    """Per operator: requested (date, letter number), confirmed, broadcast done, results
    received and subscribers reported; flags missing results close to the city's report
    deadline (carriers.warn_days before carriers.report_deadline)."""
    from outreach.carriers import ledger

    spec = _spec(c, campaign)
    plan = spec.carriers
    day = _day(today, "--today")
    with c.db.engine.connect() as conn:
        rows = ledger.status(conn, spec.id, plan, day)
    if fmt == "json":
        click.echo(json.dumps({"campaign": spec.id, "today": day.isoformat(),
                               "report_deadline": plan.report_deadline.isoformat(),
                               "results_by": plan.results_by.isoformat(), "carriers": rows},
                              ensure_ascii=False, indent=2))
        return
    left = (plan.report_deadline - day).days
    console.print(ngettext(
        "[bold]{campaign}[/bold]: broadcast {start}–{end}; confirm by {reply_by}, results by "
        "{results_by}; city's report due {deadline} ({n} day from {today})",
        "[bold]{campaign}[/bold]: broadcast {start}–{end}; confirm by {reply_by}, results by "
        "{results_by}; city's report due {deadline} ({n} days from {today})", left).format(
            campaign=spec.id, start=i18n.day(plan.start_date), end=i18n.day(plan.end_date),
            reply_by=i18n.day(plan.reply_by), results_by=i18n.day(plan.results_by),
            deadline=i18n.day(plan.report_deadline), n=left, today=i18n.day(day)))
    from rich import box

    t = Table(title=_("Carrier requests"), box=box.SIMPLE_HEAD, pad_edge=False,
              collapse_padding=True)
    cols = ("carrier", "status", "asked", "agreed", "sent", "results", "subscribers", "flag")
    for col, head in zip(cols, (_("carrier"), _("status"), _("asked"), _("agreed"), _("sent"),
                                _("results"), _("subscribers"), _("flag"))):
        t.add_column(head, justify="right" if col == "subscribers" else "left", no_wrap=True)
    for r in rows:
        flag = "[red]" + _("MISSING") + "[/red]" if r["results_missing"] else \
            ("[yellow]" + _("late") + "[/yellow]" if r["flags"] else "")
        t.add_row(r["carrier"], ledger.status_label(r["status"]), *(_dm(r[k]) for k in (
            "requested_on", "confirmed_on", "broadcast_on", "results_on")),
            i18n.number(r["sent"]), flag)
    console.print(t)
    console.print(_("dates DD/MM of {year}; asked = letter sent, agreed = "
                    "confirmed, sent = broadcast done; subscribers = as the operator "
                    "reported").format(year=plan.start_date.year))
    for r in rows:
        if r["letter_number"] or r["letter_date"]:
            how = _(", sent by {how}").format(how=_(BY_LABELS.get(r["requested_by"],
                                                                r["requested_by"]))) \
                if r["requested_by"] else ""
            letter_day = i18n.day(dt.date.fromisoformat(r["letter_date"])) \
                if r["letter_date"] else "…"
            console.print(_("{carrier}: letter Số {number} of {date}").format(
                carrier=r["carrier"], number=(r["letter_number"] or "…").strip(),
                date=letter_day) + how + (_("; note: {note}").format(note=r["note"])
                                         if r["note"] else ""))
    for r in rows:
        for f in r["flags"]:
            colour = "red" if f == r["flags"][-1] and r["results_missing"] else "yellow"
            console.print(f"[{colour}]{r['carrier']}: {f}[/{colour}]")
    missing = [r["carrier"] for r in rows if r["results_missing"]]
    if missing:
        console.print("[red]" + _("results missing from {carriers}: the city's report is due "
                                  "{deadline}").format(carriers=", ".join(missing),
                                                       deadline=i18n.day(plan.report_deadline))
                      + "[/red]")


#: How a letter went (``--by``): codes stored, words shown.
BY_LABELS = {"post": i18n.N_("post"), "email": i18n.N_("email"), "hand": i18n.N_("hand"),
             "fax": i18n.N_("fax"), "portal": i18n.N_("portal")}


def _dm(iso: str | None) -> str:
    return f"{iso[8:10]}/{iso[5:7]}" if iso else "–"


@carriers.command("result")
@click.argument("campaign")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--carrier", "name", required=True, help="The operator whose figures these are.")
@click.option("--sent", type=int, help="Subscribers messaged, typed in from a letter (with --date).")
@click.option("--delivered", type=int, help="With --sent: messages the operator says arrived.")
@click.option("--date", "day", help="With --sent: the day of the broadcast.")
@click.option("--area", "area", help="With --sent: the area's official code (default: none given).")
@click.option("--sheet", help="XLSX: the sheet to read (default the active one, or the first "
              "that has the figures).")
@click.option("--encoding", help="CSV: force an encoding (default detected).")
@click.option("--received", help="When the operator's report arrived (default today).")
@pass_ctx
def result(c: Ctx, campaign: str, file: str | None, name: str, sent: int | None,
           delivered: int | None, day: str | None, area: str | None, sheet: str | None,
           encoding: str | None, received: str | None) -> None:
    """Import an operator's reported figures: from FILE (CSV/TSV/XLSX: a day column, a count
    column, optionally an area code or name; the XLSX the request wrote, filled in, works), or
    typed in with --sent N --date D. Every row is checked (file, line, reason); nothing is
    imported when a row is wrong. A day and area already imported is replaced (a correction)."""
    from outreach.carriers import areas, ledger, results

    spec = _spec(c, campaign)
    key = _carrier(spec, name)
    plan = spec.carriers
    scopes = ledger.area_scopes(plan)
    if file and sent is not None:
        raise click.UsageError(_("give FILE or --sent N --date D, not both"))
    if file:
        why = results.open_error(file)
        if why is not None:
            raise CarrierCommandError(_("{file}: cannot open: {error}").format(file=file,
                                                                            error=why))
        if sheet is None and Path(file).suffix.lower() in (".xlsx", ".xlsm"):
            sheet = _results_sheet(file)
        figures, issues = results.read(file, scopes=scopes, start=plan.start_date,
                                       end=plan.end_date, sheet=sheet, encoding=encoding)
        source = Path(file).name
        if issues:
            for i in issues[:50]:
                err_console.print(str(i), soft_wrap=True, markup=False)
            more = _(" (first 50 shown)") if len(issues) > 50 else ""
            raise CarrierCommandError(_("{file}: {n} row(s) cannot be used{more}; "
                                        "nothing imported").format(file=file, n=len(issues),
                                                                   more=more))
    elif sent is not None:
        if not day:
            raise click.UsageError(_("--sent needs --date D (the day of the broadcast)"))
        when = _day(day, "--date")
        if not plan.start_date <= when <= plan.end_date:
            raise CarrierCommandError(_("--date {day}: outside the broadcast dates "
                                        "{start} – {end}").format(
                day=i18n.day(when), start=i18n.day(plan.start_date), end=i18n.day(plan.end_date)))
        if sent < 0 or (delivered is not None and not 0 <= delivered <= sent):
            raise CarrierCommandError(_("--sent must be ≥ 0 and --delivered between 0 and "
                                        "--sent"))
        a = None
        if area:
            a = areas.find(area, scopes, when)
            if a is None:
                raise CarrierCommandError(_("--area {area}: not an administrative unit of the "
                                            "requested area").format(area=repr(area)))
        source = f"typed in ({c.operator or 'operator'})"
        figures = [results.Figure(when, a, sent, delivered, source)]
    else:
        raise click.UsageError(_("give FILE, or --sent N --date D"))
    with c.db.engine.begin() as conn:
        _sync(c, conn, spec)
        try:
            res = ledger.store_results(conn, spec.id, key, figures, source=source,
                                       operator=c.operator,
                                       received=_day(received, "--received") if received else None)
        except ledger.CarrierError as exc:
            raise CarrierCommandError(str(exc)) from None
    console.print(_("{campaign}: {carrier}: {n} figure(s) imported ({added} new, "
                    "{replaced} replaced), {sent} subscribers messaged").format(
        campaign=spec.id, carrier=key, n=len(figures), added=res["added"],
        replaced=res["replaced"], sent=i18n.number(res["sent"])))


def _results_sheet(file: str) -> str | None:
    """The results form's sheet when the file is the workbook ``carriers request`` wrote."""
    try:
        import openpyxl

        wb = openpyxl.load_workbook(file, read_only=True)
    except Exception:  # unreadable: results.read reports it with the file name
        return None
    try:
        return "Báo cáo kết quả" if "Báo cáo kết quả" in wb.sheetnames else None
    finally:
        wb.close()
