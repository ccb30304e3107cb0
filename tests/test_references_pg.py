"""PostgreSQL: the references of deliveries and list members, checked per statement
(migration 0015), refuse what the foreign keys they replace refused, and hold under
concurrent transactions."""

from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError

from outreach.cli import main
from outreach.ledger import migrate
from outreach.ledger.db import Database
from tests.pg import pg_empty_url  # noqa: F401

pytestmark = pytest.mark.postgres

NOW = "'2024-07-29 01:00:00'"
#: the triggers on this schema's tables (pg_trigger is the whole database's)
OURS = ("SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace")


@pytest.fixture
def db(pg_empty_url: str):  # noqa: F811
    d = Database(pg_empty_url)
    d.upgrade()
    with d.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO campaigns (id, name, source_ref, text, text_sha256, definition, status, "
            f"created_at, updated_at) VALUES ('plan-126', 'p', '126/KH-UBND', 'x', "
            f"repeat('0', 64), '{{}}', 'active', {NOW}, {NOW})"))
        conn.execute(text(
            "INSERT INTO runs (id, campaign_id, run_key, kind, run_date, status, gateway, "
            f"text_sha256, due_at, created_at, options) VALUES (1, 'plan-126', 'launch:1', "
            f"'launch', '2024-07-29', 'created', 'outbox', repeat('0', 64), {NOW}, {NOW}, "
            "'{}')"))
        conn.execute(text("INSERT INTO recipients (id, e164, created_at) SELECT i, "
                          f"'+8490123456' || i, {NOW} FROM generate_series(1, 5) i"))
        conn.execute(text("INSERT INTO imports (id, list_name, files, rows_read, imported, "
                          "rejected, duplicates, created_at) "
                          f"VALUES (1, 'l', '[]', 0, 0, 0, 0, {NOW})"))
    yield d
    d.dispose()


def delivery(recipient: int, campaign: str = "plan-126", run: int = 1) -> str:
    return ("INSERT INTO deliveries (campaign_id, run_id, recipient_id, dedupe_key, channel, "
            "gateway, address, status, attempts, queued_at, updated_at) VALUES "
            f"('{campaign}', {run}, {recipient}, 'once', 'sms', 'outbox', "
            f"'+84901234567{recipient}', "
            f"'queued', 0, {NOW}, {NOW})")


def count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_the_keys_are_triggers_on_postgresql_and_the_schema_matches_the_models(
        db: Database) -> None:
    insp = inspect(db.engine)
    assert insp.get_foreign_keys("deliveries") == []
    assert insp.get_foreign_keys("list_members") == []
    # the other tables keep their keys
    assert {fk["referred_table"] for fk in insp.get_foreign_keys("import_issues")} == {
        "imports", "recipients"}
    with db.engine.connect() as conn:
        triggers = set(conn.execute(text(OURS)).scalars())
    assert {"deliveries_references", "list_members_references", "recipients_deleted",
            "recipients_delete_lock", "runs_deleted", "campaigns_deleted", "imports_deleted",
            "deliveries_recipient_id_frozen", "recipients_id_frozen"} <= triggers
    # parents whose rows the inserts lock need no table lock to be deleted
    assert not {"runs_delete_lock", "campaigns_delete_lock", "imports_delete_lock"} & triggers


@pytest.mark.parametrize("values,key,detail", [
    ((99,), "fk_deliveries_recipient_id_recipients",
     'Key (recipient_id)=(99) is not present in table "recipients".'),
    ((1, "other"), "fk_deliveries_campaign_id_campaigns",
     'Key (campaign_id)=(other) is not present in table "campaigns".'),
    ((1, "plan-126", 7), "fk_deliveries_run_id_runs",
     'Key (run_id)=(7) is not present in table "runs".'),
])
def test_a_delivery_naming_a_missing_row_is_refused_with_the_key_it_breaks(
        db: Database, values: tuple, key: str, detail: str | None) -> None:
    with pytest.raises(IntegrityError) as info:
        with db.engine.begin() as conn:
            conn.execute(text(delivery(*values)))
    assert info.value.orig.sqlstate == "23503"  # foreign_key_violation, as the key raised
    assert info.value.orig.diag.constraint_name == key
    if detail:
        assert info.value.orig.diag.message_detail == detail
    assert count(db, "deliveries") == 0


def test_one_bad_row_refuses_the_whole_insert_select(db: Database) -> None:
    with pytest.raises(IntegrityError, match="fk_deliveries_recipient_id_recipients"):
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO deliveries (campaign_id, run_id, recipient_id, dedupe_key, "
                "channel, gateway, address, status, attempts, queued_at, updated_at) "
                "SELECT 'plan-126', 1, i, 'once', 'sms', 'outbox', '+849' || i, 'queued', 0, "
                f"{NOW}, {NOW} FROM generate_series(1, 6) i"))  # 6 does not exist
    assert count(db, "deliveries") == 0
    with db.engine.begin() as conn:  # the five that exist go in
        assert conn.execute(text(
            "INSERT INTO deliveries (campaign_id, run_id, recipient_id, dedupe_key, "
            "channel, gateway, address, status, attempts, queued_at, updated_at) "
            "SELECT 'plan-126', 1, i, 'once', 'sms', 'outbox', '+849' || i, 'queued', 0, "
            f"{NOW}, {NOW} FROM generate_series(1, 5) i")).rowcount == 5


def test_a_membership_naming_a_missing_recipient_or_import_is_refused(db: Database) -> None:
    for rid, imp, key in ((42, 1, "fk_list_members_recipient_id_recipients"),
                          (1, 42, "fk_list_members_import_id_imports")):
        with pytest.raises(IntegrityError) as info:
            with db.engine.begin() as conn:
                conn.execute(text("INSERT INTO list_members (list_name, recipient_id, "
                                  f"import_id) VALUES ('l', {rid}, {imp})"))
        assert info.value.orig.diag.constraint_name == key
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO list_members (list_name, recipient_id, import_id) "
                          "VALUES ('l', 1, NULL), ('l', 2, 1)"))  # no import: allowed
    assert count(db, "list_members") == 2


def test_a_row_still_named_cannot_be_deleted_and_one_no_longer_named_can(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(delivery(1)))
        conn.execute(text("INSERT INTO list_members (list_name, recipient_id, import_id) "
                          "VALUES ('l', 2, 1)"))
    for stmt, key in (("DELETE FROM recipients WHERE id IN (1, 3)",
                       "fk_deliveries_recipient_id_recipients"),
                      ("DELETE FROM recipients WHERE id = 2",
                       "fk_list_members_recipient_id_recipients"),
                      ("DELETE FROM runs", "fk_deliveries_run_id_runs"),
                      ("DELETE FROM imports", "fk_list_members_import_id_imports")):
        with pytest.raises(IntegrityError) as info:
            with db.engine.begin() as conn:
                conn.execute(text(stmt))
        assert info.value.orig.diag.constraint_name == key, stmt
    assert count(db, "recipients") == 5 and count(db, "runs") == 1
    with db.engine.begin() as conn:
        assert conn.execute(text("DELETE FROM recipients WHERE id IN (3, 4)")).rowcount == 2
        conn.execute(text("DELETE FROM list_members"))
        assert conn.execute(text("DELETE FROM recipients WHERE id = 2")).rowcount == 1
    assert count(db, "recipients") == 2


def test_the_references_never_change_but_the_status_does(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(delivery(1)))
    for stmt in ("UPDATE deliveries SET recipient_id = 2", "UPDATE deliveries SET run_id = 2",
                 "UPDATE recipients SET id = 50 WHERE id = 5",
                 "UPDATE runs SET id = 3", "UPDATE list_members SET import_id = 1"):
        if stmt.startswith("UPDATE list_members"):
            with db.engine.begin() as conn:
                conn.execute(text("INSERT INTO list_members (list_name, recipient_id) "
                                  "VALUES ('l', 2)"))
        with pytest.raises(IntegrityError, match="never changes once written"):
            with db.engine.begin() as conn:
                conn.execute(text(stmt))
    with db.engine.begin() as conn:
        # the same value again is no change
        assert conn.execute(text("UPDATE deliveries SET campaign_id = 'plan-126', "
                                 "status = 'sent'")).rowcount == 1
        assert conn.execute(text("UPDATE recipients SET name = 'An' WHERE id = 1")).rowcount == 1
        status = conn.execute(text("SELECT recipient_id, status FROM deliveries")).one()
    assert tuple(status) == (1, "sent")


def _timeout_conn(db: Database):
    conn = db.engine.connect()
    conn.execute(text("SET lock_timeout = '300ms'"))  # for the session: kept after commit
    conn.commit()
    return conn


def test_a_delete_waits_for_a_transaction_adding_a_delivery_of_that_recipient(
        db: Database) -> None:
    adding = db.engine.connect()
    adding.begin()
    adding.execute(text(delivery(3)))  # not committed yet
    deleting = _timeout_conn(db)
    try:
        with pytest.raises(OperationalError, match="lock timeout"):
            with deleting.begin():
                deleting.execute(text("DELETE FROM recipients WHERE id = 3"))
        adding.commit()
        with pytest.raises(IntegrityError, match="still referenced"):
            with deleting.begin():
                deleting.execute(text("DELETE FROM recipients WHERE id = 3"))
    finally:
        adding.close()
        deleting.close()
    assert count(db, "recipients") == 5 and count(db, "deliveries") == 1


def test_a_run_delete_waits_on_the_row_lock_of_a_transaction_adding_its_deliveries(
        db: Database) -> None:
    adding = db.engine.connect()
    adding.begin()
    adding.execute(text(delivery(2)))  # locks run 1 (FOR KEY SHARE), not committed
    deleting = _timeout_conn(db)
    try:
        with pytest.raises(OperationalError, match="lock timeout"):
            with deleting.begin():
                deleting.execute(text("DELETE FROM runs WHERE id = 1"))
        adding.commit()
        with pytest.raises(IntegrityError, match="still referenced"):
            with deleting.begin():
                deleting.execute(text("DELETE FROM runs WHERE id = 1"))
    finally:
        adding.close()
        deleting.close()


def test_deleting_an_empty_run_does_not_wait_for_a_worker_moving_other_deliveries(
        db: Database) -> None:
    """create_run deletes its run when nobody needed a delivery: that must not wait for, nor
    hold off, the workers writing to deliveries (no table lock, unlike a recipient delete)."""
    with db.engine.begin() as conn:
        conn.execute(text(delivery(1)))
    worker = db.engine.connect()
    worker.begin()
    assert worker.execute(text("UPDATE deliveries SET status = 'sending'")).rowcount == 1
    launch = _timeout_conn(db)
    try:
        with launch.begin():
            launch.execute(text(
                "INSERT INTO runs (id, campaign_id, run_key, kind, run_date, status, gateway, "
                f"text_sha256, due_at, created_at, options) VALUES (2, 'plan-126', 'launch:2', "
                f"'launch', '2024-07-29', 'created', 'outbox', repeat('0', 64), {NOW}, {NOW}, "
                "'{}')"))
            assert launch.execute(text("DELETE FROM runs WHERE id = 2")).rowcount == 1
        # and a recipient delete does wait for it (the table lock)
        with pytest.raises(OperationalError, match="lock timeout"):
            with launch.begin():
                launch.execute(text("DELETE FROM recipients WHERE id = 5"))
    finally:
        worker.rollback()
        worker.close()
        launch.close()
    assert count(db, "runs") == 1 and count(db, "recipients") == 5


def test_a_delivery_of_a_recipient_being_deleted_waits_then_is_refused(db: Database) -> None:
    deleting = db.engine.connect()
    deleting.begin()
    assert deleting.execute(text("DELETE FROM recipients WHERE id = 4")).rowcount == 1
    outcome: list[BaseException | None] = []

    def add() -> None:
        try:
            with db.engine.begin() as conn:
                conn.execute(text(delivery(4)))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - read by the assertion
            outcome.append(exc)

    t = threading.Thread(target=add)
    t.start()
    t.join(1.0)
    assert t.is_alive()  # waits for the delete's transaction
    deleting.commit()
    deleting.close()
    t.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError)
    assert outcome[0].orig.diag.constraint_name == "fk_deliveries_recipient_id_recipients"
    assert count(db, "deliveries") == 0


def test_db_check_counts_a_reference_broken_with_the_triggers_off(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(delivery(77)))
        conn.execute(text("INSERT INTO list_members (list_name, recipient_id, import_id) "
                          "VALUES ('l', 78, 9)"))
    r = CliRunner().invoke(main, ["--lang", "en", "--database-url", db.url, "db", "check"])
    assert r.exit_code == 1, r.output
    assert "rows breaking a foreign key: 3" in r.stdout


def test_down_to_0014_brings_the_foreign_keys_back_and_up_again_replaces_them(
        db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(delivery(1)))
    from alembic import command

    with db.engine.begin() as conn:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014")
    insp = inspect(db.engine)
    assert {fk["name"] for fk in insp.get_foreign_keys("deliveries")} == {
        "fk_deliveries_campaign_id_campaigns", "fk_deliveries_run_id_runs",
        "fk_deliveries_recipient_id_recipients"}
    with db.engine.connect() as conn:
        assert conn.execute(text(OURS)).all() == []
    db.upgrade()
    assert migrate.current(db.engine) == migrate.head()
    assert inspect(db.engine).get_foreign_keys("deliveries") == []
    with pytest.raises(IntegrityError):
        with db.engine.begin() as conn:
            conn.execute(text(delivery(99)))
    assert count(db, "deliveries") == 1


# -- what a first version let through (found by trying): each refused now ----------------------
def _pg(db: Database, *, autocommit: bool = False, isolation: str | None = None,
        lock_timeout: str | None = None):
    """A raw psycopg connection to the test schema, at the isolation level asked."""
    import psycopg

    u = db.engine.url
    c = psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database,
                        options=u.query.get("options"), autocommit=autocommit)
    if isolation:
        c.isolation_level = getattr(psycopg.IsolationLevel, isolation)
    if lock_timeout:
        c.execute(f"SET lock_timeout = '{lock_timeout}'")
        c.commit()
    return c


def orphans(db: Database) -> dict[str, int]:
    from outreach.ledger.check import ledger_problems

    with db.engine.connect() as conn:
        return ledger_problems(conn)


RUN3 = ("INSERT INTO runs (id, campaign_id, run_key, kind, run_date, status, gateway, "
        f"text_sha256, due_at, created_at, options) VALUES (3, 'plan-126', 'launch:3', "
        f"'launch', '2024-07-29', 'created', 'outbox', repeat('0', 64), {NOW}, {NOW}, '{{}}')")


def test_a_parent_committed_while_the_insert_waits_is_locked_before_it_is_counted(
        db: Database) -> None:
    """The insert's lock of its runs waits (here on another lock of run 1) while run 3 is
    committed: run 3 was not in that statement's snapshot. It is locked and counted by a new
    statement, so a delete of run 3 must wait for the inserting transaction."""
    import psycopg

    creator, holder, adder = _pg(db), _pg(db), _pg(db)
    deleter = _pg(db, autocommit=True, lock_timeout="300ms")
    try:
        creator.execute(RUN3)  # not committed
        holder.execute("SELECT 1 FROM runs WHERE id = 1 FOR UPDATE")
        result: list[BaseException | None] = []

        def add() -> None:
            try:
                adder.execute(
                    "INSERT INTO deliveries (campaign_id, run_id, recipient_id, dedupe_key, "
                    "channel, gateway, address, status, attempts, queued_at, updated_at) VALUES "
                    f"('plan-126', 1, 1, 'a', 'sms', 'outbox', '+1', 'queued', 0, {NOW}, {NOW}), "
                    f"('plan-126', 3, 2, 'b', 'sms', 'outbox', '+2', 'queued', 0, {NOW}, {NOW})")
                result.append(None)
            except BaseException as exc:  # noqa: BLE001 - read below
                result.append(exc)

        t = threading.Thread(target=add)
        t.start()
        t.join(0.5)
        assert t.is_alive()  # waits for run 1
        creator.commit()
        holder.rollback()
        t.join(10)
        assert result == [None]
        with pytest.raises(psycopg.errors.LockNotAvailable):
            deleter.execute("DELETE FROM runs WHERE id = 3")  # waits on the insert's lock
        adder.commit()
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="still referenced"):
            deleter.execute("DELETE FROM runs WHERE id = 3")
    finally:
        for c in (creator, holder, adder, deleter):
            c.close()
    assert orphans(db) == {} and count(db, "deliveries") == 2


@pytest.mark.parametrize("isolation", ["REPEATABLE_READ", "SERIALIZABLE"])
@pytest.mark.parametrize("parent,stmt", [
    ("runs", "DELETE FROM runs WHERE id = 1"),
    ("recipients", "DELETE FROM recipients WHERE id = 5"),
])
def test_a_delete_under_a_snapshot_isolation_is_refused_not_blind(
        db: Database, isolation: str, parent: str, stmt: str) -> None:
    """Under REPEATABLE READ the delete's check would see only its snapshot, not the
    delivery committed since: it is refused (as a key refuses it, with another reason)."""
    import psycopg

    deleting = _pg(db, isolation=isolation)
    adding = _pg(db, autocommit=True)
    try:
        deleting.execute("SELECT 1")  # the snapshot
        adding.execute(delivery(5))  # of run 1, recipient 5, committed
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="only at isolation level "
                           "READ COMMITTED"):
            deleting.execute(stmt)
        deleting.rollback()
        # a delete that removes nothing is not refused
        deleting.execute(f"DELETE FROM {parent} WHERE id = 424242")
        deleting.commit()
    finally:
        deleting.close()
        adding.close()
    assert orphans(db) == {} and count(db, parent) in (1, 5)


@pytest.mark.parametrize("isolation", ["REPEATABLE_READ", "SERIALIZABLE"])
def test_an_insert_under_a_snapshot_isolation_of_a_recipient_deleted_since_fails(
        db: Database, isolation: str) -> None:
    import psycopg

    adding = _pg(db, isolation=isolation)
    deleting = _pg(db, autocommit=True)
    try:
        assert adding.execute("SELECT count(*) FROM recipients").fetchone() == (5,)
        deleting.execute("DELETE FROM recipients WHERE id = 5")
        with pytest.raises(psycopg.errors.SerializationFailure):
            adding.execute(delivery(5))
        adding.rollback()
        assert adding.execute("SELECT count(*) FROM recipients").fetchone() == (4,)
        deleting.execute("DELETE FROM recipients WHERE id = 4")
        with pytest.raises(psycopg.errors.SerializationFailure):
            adding.execute("INSERT INTO list_members (list_name, recipient_id) VALUES ('l', 4)")
        adding.rollback()
    finally:
        adding.close()
        deleting.close()
    assert orphans(db) == {} and count(db, "deliveries") == 0


def test_an_insert_select_under_repeatable_read_still_goes_in(db: Database) -> None:
    adding = _pg(db, isolation="REPEATABLE_READ")
    try:
        adding.execute(delivery(1))
        adding.execute("INSERT INTO list_members (list_name, recipient_id, import_id) "
                       "VALUES ('l', 1, 1)")
        adding.commit()
    finally:
        adding.close()
    assert count(db, "deliveries") == 1 and count(db, "list_members") == 1


def test_a_temporary_table_does_not_stand_in_for_the_ledgers_own(db: Database) -> None:
    import psycopg

    c = _pg(db)
    try:
        c.execute("CREATE TEMPORARY TABLE recipients (id bigint)")
        c.execute("INSERT INTO recipients VALUES (99)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            c.execute(delivery(99))
        c.rollback()
        c.execute(delivery(1))
        c.commit()
        schema = c.execute("SELECT current_schema()").fetchone()[0]  # this test's own
        c.execute("CREATE TEMPORARY TABLE deliveries (recipient_id bigint)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="still referenced"):
            c.execute(f'DELETE FROM "{schema}".recipients WHERE id = 1')
        c.rollback()
    finally:
        c.close()
    assert orphans(db) == {} and count(db, "recipients") == 5


@pytest.mark.parametrize("stmt", ["TRUNCATE runs", "TRUNCATE recipients CASCADE",
                                  "TRUNCATE imports, import_issues",
                                  "TRUNCATE recipients, import_issues, deliveries"])
def test_truncating_a_parent_alone_is_refused_and_with_its_children_allowed(
        db: Database, stmt: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(delivery(1)))
        conn.execute(text("INSERT INTO list_members (list_name, recipient_id, import_id) "
                          "VALUES ('l', 2, 1)"))
    with pytest.raises(Exception, match="cannot truncate a table referenced in a foreign key"):
        with db.engine.begin() as conn:
            conn.execute(text(stmt))
    assert orphans(db) == {} and count(db, "deliveries") == 1
    with db.engine.begin() as conn:
        conn.execute(text("TRUNCATE deliveries, list_members, import_issues, runs, recipients, "
                          "imports"))
    assert count(db, "runs") == 0 and count(db, "recipients") == 0


@pytest.fixture
def role(db: Database):
    """A role of its own (dropped afterwards), allowed to use this schema."""
    import uuid

    name = f"outreach_test_{uuid.uuid4().hex[:10]}"
    with db.engine.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        conn.execute(text(f"CREATE ROLE {name} NOLOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {name}"))
        conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {name}"))
    yield name
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP OWNED BY {name}"))
        conn.execute(text(f"DROP ROLE {name}"))


def test_a_role_allowed_to_insert_children_need_not_be_allowed_to_lock_parents(
        db: Database, role: str) -> None:
    """As with a key (whose check runs as the parent table's owner): INSERT on deliveries and
    list_members, SELECT on the parents, is enough."""
    with db.engine.begin() as conn:
        conn.execute(text(f"GRANT INSERT, SELECT ON deliveries, list_members TO {role}"))
        conn.execute(text(f"GRANT SELECT ON campaigns, runs, recipients, imports TO {role}"))
    with db.engine.begin() as conn:
        conn.execute(text(f"SET LOCAL ROLE {role}"))
        conn.execute(text(delivery(1)))
        conn.execute(text("INSERT INTO list_members (list_name, recipient_id, import_id) "
                          "VALUES ('l', 1, 1)"))
    with pytest.raises(IntegrityError, match="fk_deliveries_recipient_id_recipients"):
        with db.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL ROLE {role}"))
            conn.execute(text(delivery(99)))
    assert count(db, "deliveries") == 1 and count(db, "list_members") == 1


def test_row_level_security_on_a_child_does_not_hide_it_from_a_parents_delete(
        db: Database, role: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(delivery(1)))
        conn.execute(text("ALTER TABLE deliveries ENABLE ROW LEVEL SECURITY"))
        conn.execute(text(f"CREATE POLICY other_campaign ON deliveries TO {role} "
                          "USING (campaign_id = 'another')"))
        conn.execute(text(f"GRANT SELECT, DELETE ON recipients, deliveries, list_members "
                          f"TO {role}"))
    try:
        with pytest.raises(IntegrityError, match="still referenced"):
            with db.engine.begin() as conn:
                conn.execute(text(f"SET LOCAL ROLE {role}"))
                assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one() == 0
                conn.execute(text("DELETE FROM recipients WHERE id = 1"))
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE deliveries DISABLE ROW LEVEL SECURITY"))
    assert orphans(db) == {} and count(db, "recipients") == 5


def test_read_uncommitted_is_read_committed_for_the_checks(db: Database) -> None:
    c = _pg(db, isolation="READ_UNCOMMITTED")
    try:
        c.execute(RUN3)
        c.commit()
        assert c.execute("DELETE FROM runs WHERE id = 3").rowcount == 1  # names nothing
        c.commit()
    finally:
        c.close()
    assert count(db, "runs") == 1
