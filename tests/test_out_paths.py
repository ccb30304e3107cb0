"""Output options: a missing folder is an error naming it (exit 2, one line, nothing written);
write errors worded by errno (permissions, read-only filesystem, full disk), for files and for
the database."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from outreach import safeio
from outreach.cli import main
from tests.helpers import english_words, write_campaign

CID = "test-campaign"


def cli(url: str, *args: str, lang: str = "vi") -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--lang", lang, "--database-url", url, *args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def sent(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A campaign launched to the outbox: something to report and export."""
    toml = write_campaign(tmp_path, n=4)
    url = f"sqlite:///{tmp_path / 'o.db'}"
    code, _out, err = cli(url, "campaign", "launch", str(toml))
    assert code == 0, err
    yield url, tmp_path


def outputs(tmp: Path, out: str) -> list[list[str]]:
    """Every command with an output file or folder, writing to ``out``."""
    lst = str(tmp / f"{CID}-list.csv")
    return [
        ["report", CID, "--format", "csv", "--out", out],
        ["report", CID, "--format", "json", "--out", out],
        ["report", CID, "--format", "xlsx", "--out", out + ".xlsx"],
        ["report", CID, "--official", "--out", out + ".docx"],
        ["deliveries", "list", CID, "--export", out],
        ["deliveries", "list", CID, "--not-reached", "--export", out],
        ["inbox", "export", out],
        ["recipients", "import", lst, "--list", "l2", "--reject-file", out],
        ["campaign", "launch", str(tmp / f"{CID}.toml"), "--reject-file", out],
        ["carriers", "request", CID, "--out", out],
    ]


def test_every_output_option_refuses_a_missing_folder(sent: tuple[str, Path]) -> None:
    url, tmp = sent
    missing = tmp / "bao-cao"
    for args in outputs(tmp, str(missing / "thang-7" / "ket-qua.csv")):
        code, out, err = cli(url, *args)
        assert code == 2, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (args, err)
        assert f"thư mục {missing} không tồn tại" in lines[0], (args, err)
        assert lines[0].startswith("Lỗi: ") and "chưa ghi gì" in lines[0], (args, err)
        assert english_words(lines[0]) == [], (args, err)
        assert not missing.exists(), args  # nothing written, no folder made


def test_missing_folder_message_in_english(sent: tuple[str, Path]) -> None:
    url, tmp = sent
    code, _out, err = cli(url, "report", CID, "--format", "csv", "--out",
                          str(tmp / "nope" / "r.csv"), lang="en")
    assert code == 2
    assert err.strip() == (f"Error: --out {tmp / 'nope' / 'r.csv'}: the folder {tmp / 'nope'} "
                           "does not exist; nothing was written (create it first, or give a "
                           "path in an existing folder)")


def test_a_file_in_place_of_the_folder(sent: tuple[str, Path]) -> None:
    url, tmp = sent
    blocker = tmp / "not-a-folder"
    blocker.write_text("x")
    code, _out, err = cli(url, "deliveries", "list", CID, "--export", str(blocker / "x.csv"))
    assert code == 2
    assert f"{blocker} là một tệp, không phải thư mục" in err
    assert english_words(err) == []


def test_an_existing_folder_is_written(sent: tuple[str, Path]) -> None:
    url, tmp = sent
    out = tmp / "ket-qua.csv"
    code, _out, err = cli(url, "report", CID, "--format", "csv", "--out", str(out))
    assert code == 0, err
    assert out.read_text("utf-8-sig").splitlines()[0].startswith("quận/huyện,")
    code, _out, err = cli(url, "deliveries", "list", CID, "--export", "rel.csv")
    assert code == 0, err  # a bare file name: the current folder exists
    Path("rel.csv").unlink()


def test_require_folder_for_an_output_folder(tmp_path: Path) -> None:
    """An output folder the command creates (carriers request --out): only its parent must
    exist; the topmost missing folder is named."""
    assert safeio.require_folder(tmp_path / "thu-moi", is_folder=True) == tmp_path / "thu-moi"
    with pytest.raises(safeio.MissingFolder) as info:
        safeio.require_folder(tmp_path / "a" / "b" / "c", is_folder=True)
    assert info.value.folder == tmp_path / "a" and not info.value.not_a_folder
    with pytest.raises(safeio.MissingFolder) as info:
        safeio.require_folder(tmp_path / "a" / "b" / "c.csv")
    assert info.value.folder == tmp_path / "a"
    (tmp_path / "f").write_text("")
    with pytest.raises(safeio.MissingFolder) as info:
        safeio.require_folder(tmp_path / "f", is_folder=True)
    assert info.value.not_a_folder


# --- errno ------------------------------------------------------------------------------------

def fail_open_of(monkeypatch: pytest.MonkeyPatch, target: Path, code: int) -> None:
    """``os.open`` of ``target`` (the write call of every private file) fails with ``code``."""
    real = os.open

    def fake(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path) == target:
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake)


EXPECTED = {
    errno.EROFS: "hệ thống tệp chỉ cho đọc",
    errno.ENOSPC: "ổ đĩa đã đầy",
    errno.EDQUOT: "ổ đĩa đã đầy",
    errno.EACCES: "không có quyền ghi",
    errno.EPERM: "không có quyền ghi",
}


@pytest.mark.parametrize("code", list(EXPECTED), ids=[errno.errorcode[c] for c in EXPECTED])
def test_file_write_errors_by_errno(sent: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
                                    code: int) -> None:
    url, tmp = sent
    out = tmp / "r.csv"
    fail_open_of(monkeypatch, out, code)
    rc, _out, err = cli(url, "report", CID, "--format", "csv", "--out", str(out))
    assert rc == 1
    line = err.strip()
    assert line.startswith(f"lỗi: không ghi được {out}: "), line
    assert EXPECTED[code] in line
    others = {v for c, v in EXPECTED.items() if v != EXPECTED[code]}
    assert not any(o in line for o in others), line  # a full disk is not "permissions"
    assert english_words(line) == [] and "Errno" not in line


def test_file_write_errors_in_english() -> None:
    assert safeio.os_error_text(OSError(errno.EROFS, "Read-only file system", "/mnt/r.csv")) \
        == ("cannot write /mnt/r.csv: the filesystem is read-only (mounted read-only, or a "
            "write-protected disk): write to another place, or have it mounted read-write")
    assert safeio.os_error_text(OSError(errno.ENOSPC, "No space left on device", "r.csv")) \
        == ("cannot write r.csv: the disk is full (or this user's disk quota is used up): "
            "free some space, or write to another disk")
    assert safeio.os_error_text(OSError(errno.EACCES, "Permission denied", "r.csv")).startswith(
        "cannot write r.csv: this user may not write there (permissions)")


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES],
                         ids=["EROFS", "ENOSPC", "EACCES"])
def test_new_database_file_write_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        code: int) -> None:
    """Creating the SQLite file fails (prepare_sqlite_file's os.open): the database is named,
    the cause follows the errno."""
    db = tmp_path / "o.db"
    fail_open_of(monkeypatch, db, code)
    rc, _out, err = cli(f"sqlite:///{db}", "audit", "list")
    assert rc == 1
    line = err.strip()
    assert line.startswith(f"lỗi: cơ sở dữ liệu {db}: "), line
    assert EXPECTED[code] in line
    assert english_words(line) == []


class _Statvfs:
    def __init__(self, flag: int, avail: int) -> None:
        self.f_flag, self.f_bavail = flag, avail


@pytest.mark.parametrize("message,statvfs,expected", [
    # SQLite says "readonly database" for a read-only mount: the filesystem tells which
    ("attempt to write a readonly database", _Statvfs(os.ST_RDONLY, 100), errno.EROFS),
    ("attempt to write a readonly database", _Statvfs(0, 100), None),
    ("database or disk is full", _Statvfs(0, 0), errno.ENOSPC),
    ("could not extend file: No space left on device", None, errno.ENOSPC),
    ("could not write block: Read-only file system", None, errno.EROFS),
])
def test_database_errors_by_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  message: str, statvfs: _Statvfs | None,
                                  expected: int | None) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from outreach.ledger.db import Database

    db = tmp_path / "o.db"
    url = f"sqlite:///{db}"
    assert cli(url, "audit", "list")[0] == 0  # the database exists

    def upgrade(self: Database) -> None:
        raise OperationalError("BEGIN", {}, sqlite3.OperationalError(message))

    monkeypatch.setattr(Database, "upgrade", upgrade)
    if statvfs is not None:
        monkeypatch.setattr(os, "statvfs", lambda p: statvfs)
    if expected is None:  # a writable filesystem: not ours to write (permissions)
        monkeypatch.setattr(os, "access", lambda p, mode: False)
    rc, _out, err = cli(url, "audit", "list")
    assert rc == 1
    line = err.strip()
    assert line.startswith(f"lỗi: cơ sở dữ liệu {db}: "), line
    assert EXPECTED[expected or errno.EACCES] in line
    assert english_words(line) == []
