"""Optional dependencies: what is an extra, the message a missing one gives (it names the pip
command), the pins CI and the README install."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from outreach import extras
from outreach.gateways import base, gateway_class
from outreach.ledger.db import Database
from tests.test_reports import CID, cli, db, seeded  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]


def _block(monkeypatch: pytest.MonkeyPatch, module: str, *loaded: str) -> None:
    """Make ``import module`` fail as when it is not installed, and forget the project's
    modules that imported it already."""
    # the package and every submodule an earlier test imported (``from twilio.rest import``
    # finds ``twilio.rest`` in sys.modules without looking at ``twilio``)
    for key in [k for k in sys.modules if k == module or k.startswith(module + ".")] or [module]:
        monkeypatch.setitem(sys.modules, key, None)
    for name in loaded:
        monkeypatch.delitem(sys.modules, name, raising=False)
        parent, _, child = name.rpartition(".")
        # ``from outreach.gateways import twilio`` reads the package's attribute: drop it too,
        # so that the module re-imported here never outlives the test
        monkeypatch.delattr(sys.modules[parent], child, raising=False)


@pytest.mark.parametrize("gateway,module,extra,loaded", [
    ("twilio", "twilio", "twilio", ("outreach.gateways.twilio",)),
    ("smpp", "smpplib", "smpp", ("outreach.gateways.smpp",)),
])
def test_a_gateway_without_its_extra_names_the_pip_command(
        monkeypatch: pytest.MonkeyPatch, seeded: Database, gateway: str, module: str,
        extra: str, loaded: tuple[str, ...]) -> None:
    _block(monkeypatch, module, *loaded)
    with pytest.raises(base.ConfigurationError) as e:
        gateway_class(gateway)
    assert e.value.reason == "missing-extra"
    assert f"the {gateway} gateway needs the '{extra}' extra" in str(e.value)
    assert f"pip install 'outreach[{extra}]'" in str(e.value)
    code, out, err = cli(seeded, "gateways", "check", gateway)
    assert code == 1
    assert f"pip install 'outreach[{extra}]'" in " ".join(err.split())
    assert "Traceback" not in out + err
    _block(monkeypatch, module, *loaded)
    assert gateway_class("outbox").name == "outbox"  # the others still load


def test_smpp_listen_without_smpplib_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                     seeded: Database) -> None:
    _block(monkeypatch, "smpplib", "outreach.gateways.smpp")
    code, out, err = cli(seeded, "smpp", "listen")
    assert code == 1
    assert "pip install 'outreach[smpp]'" in " ".join(err.split())
    assert "Traceback" not in out + err


def test_a_postgres_url_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                        seeded: Database) -> None:
    _block(monkeypatch, "psycopg")
    from click.testing import CliRunner

    from outreach.cli import main

    r = CliRunner().invoke(main, ["--database-url",
                                  "postgresql+psycopg://postgres@127.0.0.1:5432/test", "report",
                                  CID], catch_exceptions=False)
    assert r.exit_code == 1
    err = " ".join(r.stderr.split())
    assert ("a PostgreSQL database URL (postgresql+psycopg://…) needs the 'postgres' extra" in err
            and "pip install 'outreach[postgres]'" in err)
    assert "Traceback" not in r.stdout + r.stderr


def test_the_receiver_needs_twilio_only_for_twilio_routes(monkeypatch: pytest.MonkeyPatch,
                                                          seeded: Database) -> None:
    from outreach.receipts import receiver

    _block(monkeypatch, "twilio")
    app = receiver.create_app(seeded)  # Zalo and eSMS receipts need no Twilio SDK
    assert app.test_client().get("/healthz").json == {"ok": True}
    with pytest.raises(extras.MissingExtra) as e:
        receiver.create_app(seeded, twilio_auth_token="secret")
    assert e.value.extra == "twilio" and "pip install 'outreach[twilio]'" in str(e.value)


def test_require_names_only_the_extras_it_knows() -> None:
    assert extras.require("json").dumps([1]) == "[1]"
    with pytest.raises(ModuleNotFoundError) as e:
        extras.require("outreach_no_such_module")
    assert not isinstance(e.value, extras.MissingExtra)
    missing = extras.for_module("weasyprint.text")
    assert missing is not None and missing.extra == "pdf"
    assert extras.for_module("numpy") is None and extras.for_module(None) is None


def _name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ;@]", req, maxsplit=1)[0]).lower()


def test_default_install_leaves_the_extras_out_and_test_brings_them_all() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    default = {_name(r) for r in project["dependencies"]}
    opt = project["optional-dependencies"]
    assert {"psycopg", "twilio", "smpplib", "weasyprint", "matplotlib", "playwright"} \
        .isdisjoint(default)
    assert {e: {_name(r) for r in opt[e]} for e in ("postgres", "twilio", "smpp", "pdf")} == {
        "postgres": {"psycopg"}, "twilio": {"twilio"}, "smpp": {"smpplib"}, "pdf": {"weasyprint"}}
    assert "outreach[postgres,twilio,smpp,pdf]" in opt["test"]
    for module, (extra, _why) in extras.MODULES.items():
        assert extra in opt, module  # every extra the messages name exists


def test_constraints_pin_every_dependency_and_ci_and_readme_use_them() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text("utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if m:
            pins[_name(m.group(1))] = m.group(2)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra, reqs in project["optional-dependencies"].items():
        wanted |= {_name(r) for r in reqs if not r.startswith("outreach[")}
    assert wanted - set(pins) == set()  # every direct dependency pinned
    assert "outreach" not in pins  # the checkout itself is never pinned
    install = "pip install -c constraints.txt -e '.[test]'"
    assert install in (ROOT / ".ci" / "run").read_text("utf-8")
    assert install in (ROOT / "README.md").read_text("utf-8")
