"""The audit log's details read as words in the operator's language (console and dashboard),
every key the code records has a label, and the JSON keeps the keys and values as stored."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from outreach import i18n
from outreach.reporting import audit

ROOT = Path(__file__).resolve().parent.parent


def _recorded_keys() -> set[str]:
    """Every string key of a dict literal passed as ``details=`` to ``audit.record`` (or to
    ``record`` inside outreach/reporting/audit.py's callers) anywhere in the package, including
    the dicts spliced into it with ``**``."""
    keys: set[str] = set()
    for path in (ROOT / "outreach").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "record"):
                continue
            for kw in node.keywords:
                if kw.arg != "details":
                    continue
                for sub in ast.walk(kw.value):
                    if isinstance(sub, ast.Dict):
                        keys |= {k.value for k in sub.keys
                                 if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return keys


def test_every_key_recorded_has_a_label() -> None:
    from outreach.input.recipients import ImportSummary
    from outreach.reporting.privacy import PurgeResult

    keys = _recorded_keys()
    assert {"run_id", "deliveries", "window_note", "letter_number", "with_key"} <= keys  # the scan works
    keys |= set(ImportSummary(import_id=1, list_name="x", files=[]).to_dict())
    keys |= {f.name for f in dataclasses.fields(PurgeResult)}
    keys |= {"required", "reason"}  # approvals.set_required records its setting's value
    keys |= {"what", "file", "rows"}  # safeio.record_file builds its dict step by step
    missing = sorted(keys - set(audit.DETAIL_LABELS))
    assert missing == []


@pytest.fixture
def lang():
    before = i18n.current()
    yield i18n.set_language
    i18n.set_language(before)


def test_details_in_vietnamese_and_english(lang) -> None:
    details = {"run_id": 3, "gateways": {"sms": "outbox"}, "override_window": False,
               "deliveries": 2098, "statuses": ["failed", "unknown"], "reason": "citizen-request",
               "lists_sha256": "ab" * 32, "cost_vnd": 1234567.0}
    lang("vi")
    assert audit.describe(details) == (
        "đợt gửi: 3; cổng gửi: sms outbox; gửi ngoài khung giờ: không; tin nhắn: 2.098; "
        "trạng thái: lỗi, chưa rõ; lý do: người dân yêu cầu; mã băm danh sách: abababababab; "
        "chi phí (đồng): 1.234.567")
    lang("en")
    assert audit.describe(details) == (
        "run: 3; gateways: sms outbox; outside the send window: no; deliveries: 2,098; "
        "statuses: failed, unknown; reason: citizen-request; lists' hash: abababababab; "
        "cost (VND): 1,234,567")


def test_long_lists_records_and_unknown_keys(lang) -> None:
    lang("vi")
    files = [f"recipients/{i}.csv" for i in range(9)]
    line = audit.describe({"files": files, "unknown_units": [{"kind": "ward", "name": "X"}],
                           "by_carrier": {"Viettel": 5, "unknown": 2}, "new_key": True})
    assert line == ("tệp: 9 mục; đơn vị hành chính không nhận ra: 1 mục; "
                    "theo nhà mạng: Viettel 5, không rõ nhà mạng 2; new_key: có")
    assert audit.describe({}) == "" and audit.describe(None) == ""
    long = audit.describe({"note": "x" * 500}, limit=60)
    assert len(long) == 60 and long.endswith("…") and long.startswith("ghi chú: xxx")


def test_audit_list_shows_words_and_json_keeps_keys(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from outreach.cli import main

    monkeypatch.chdir(ROOT)
    db = f"sqlite:///{tmp_path / 'a.db'}"
    env = {"OUTREACH_DATABASE_URL": db, "OUTREACH_HOME": str(tmp_path), "COLUMNS": "200"}
    runner = CliRunner()
    res = runner.invoke(main, ["--lang", "vi", "optout", "add", "0905550001"], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["--lang", "vi", "audit", "list"], env=env)
    assert res.exit_code == 0, res.output
    assert "số điện thoại: 1; đã thêm: 1; lý do: người dân yêu cầu; nguồn: cán bộ vận hành nhập" \
        in res.output
    assert '{"' not in res.output
    res = runner.invoke(main, ["--lang", "vi", "audit", "list", "--format", "json"], env=env)
    entry = json.loads(res.output)[0]
    assert entry["details"] == {"numbers": 1, "added": 1, "reason": "citizen-request",
                                "source": "operator"}
