"""PostgreSQL: the references of deliveries and list members checked once per statement.

A foreign key is checked by a trigger per inserted row: one index probe of the parent and a
row lock on it (``FOR KEY SHARE``, a write of the parent row's header and a WAL record). A
run's rows go in by ``INSERT … SELECT`` in slices of 10,000 (outreach.ledger.runs), an import's
memberships by one ``INSERT … SELECT`` per batch, so the same campaign and run were locked
again for every row and every recipient twice (benchmarks/city_1m.py, PostgreSQL
``--enqueue-only`` of 1,000,000: the three keys of ``deliveries`` took 15 of the 25 s of run
creation; the two of ``list_members`` about 4 s of the import).

This revision replaces those five keys, on PostgreSQL only, by statement-level triggers
(PostgreSQL manual, "CREATE TRIGGER": ``REFERENCING NEW TABLE``, transition relations) that
keep the same guarantees:

* a child row whose parent does not exist is refused (SQLSTATE 23503, the foreign key's
  error, naming the key it replaces): one anti-join of the statement's new rows with the
  parent's primary key, after the statement;
* the few distinct campaigns, runs and imports of the statement are locked ``FOR KEY SHARE``
  and counted by the same statement (a parent counted is a parent locked; one committed
  while the statement ran is taken by a second, later look), so they cannot be deleted until
  the transaction ends; a delete of one waits on that row lock, and then refuses, after the
  statement, to delete a row a child still names (no table lock: deleting an empty run never
  stalls the workers);
* recipients are not locked one by one (that was the cost). Instead a ``DELETE`` of recipients
  first takes ``SHARE`` locks on deliveries and list_members (it waits for every transaction
  inserting into them, and holds off new ones), then refuses, after the statement, to delete a
  recipient that a delivery or a membership still names. A recipient is deleted only by hand:
  outreach never does;
* the key columns are never updated: an ``UPDATE`` of a referenced id (parents) or of a
  referring column (children) is refused;
* ``TRUNCATE`` of a parent is refused unless its children are emptied by the same command
  (checked after it, like the key's "cannot truncate a table referenced in a foreign key
  constraint");
* the functions find the ledger's own tables (``search_path`` = the migration's schema, then
  ``pg_temp``): a session's temporary table of the same name does not stand in for them.

What a key does that these do not: under REPEATABLE READ or SERIALIZABLE a key's check looks
past the transaction's snapshot. A function cannot, so there a delete or truncate of a parent
row that children may name is refused (SQLSTATE 0A000, "only at isolation level READ
COMMITTED"), and the recipients of an insert are locked as a key would lock them (a recipient
deleted since the snapshot fails the transaction with a serialization failure, as with a
key). outreach always runs at READ COMMITTED. Other refusals where a key would have waited
or passed (found by trying; none is a path outreach takes): a hand ``DELETE`` of recipients
while a launch is writing may meet it in a deadlock, which PostgreSQL ends by refusing one
of the two; a delete of a run whose deliveries another open transaction is deleting is
refused at once rather than after it; one statement naming several runs each locked
``FOR UPDATE`` by others while new ones commit may be refused after its second look;
``TRUNCATE parent CASCADE`` no longer empties the children (name them). Nothing is ever
half-written. The functions name the migration's schema: a dump restored under another
schema name needs them created again (downgrade to 0014, upgrade).

On SQLite the keys stay (its check is a cheap in-process index probe; the embedded launch
meets its goal with them). ``outreach db check`` reports any orphan on both databases.
The models keep their ``ForeignKey`` declarations (the relationships read naturally);
:data:`outreach.ledger.migrate.REFERENCES` lists the keys PostgreSQL checks this way (a
migration keeps its own copy below: it must not change when the package does).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 14:30:00
"""
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

#: child table -> [(constraint name, column, parent table, lock the parents)]
KEYS = {
    'deliveries': [('fk_deliveries_campaign_id_campaigns', 'campaign_id', 'campaigns', True),
                   ('fk_deliveries_run_id_runs', 'run_id', 'runs', True),
                   ('fk_deliveries_recipient_id_recipients', 'recipient_id', 'recipients', False)],
    'list_members': [('fk_list_members_recipient_id_recipients', 'recipient_id', 'recipients',
                      False),
                     ('fk_list_members_import_id_imports', 'import_id', 'imports', True)],
}


def _parents() -> dict[str, list[tuple[str, str, str, bool]]]:
    """parent table -> [(constraint name, child table, column, the inserts lock the parent)]"""
    out: dict[str, list[tuple[str, str, str, bool]]] = {}
    for child, keys in KEYS.items():
        for name, col, parent, lock in keys:
            out.setdefault(parent, []).append((name, child, col, lock))
    return out


def _unlocked_children(refs: list[tuple[str, str, str, bool]]) -> list[str]:
    """The child tables whose inserts do not lock this parent's rows: a delete must wait for
    (and hold off) their writers with a table lock. Where the inserts lock the parent rows
    (campaigns, runs, imports), the delete waits on those row locks alone, as with a key, so
    deleting an empty run (outreach.ledger.runs.create_run) never stalls the workers."""
    return sorted({child for _n, child, _c, lock in refs if not lock})


def _violation(name: str, table: str, col: str, parent: str) -> str:
    """The foreign key's own error for a child row naming ``missing``, a parent that is not
    there (SQLSTATE 23503, its message and detail as PostgreSQL words them)."""
    detail = (f"format('Key ({col})=(%s) is not present in table \"{parent}\".', "
              f"coalesce(missing, '?'))")
    return (f"RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', "
            f"MESSAGE = 'insert or update on table \"{table}\" violates foreign key constraint "
            f"\"{name}\"', DETAIL = {detail}, CONSTRAINT = '{name}';")


#: True in a READ COMMITTED transaction, where each statement of a function sees what is
#: committed when it starts (PostgreSQL manual, "Transaction Isolation"; it runs READ
#: UNCOMMITTED as READ COMMITTED)
READ_COMMITTED = ("current_setting('transaction_isolation') IN "
                  "('read committed', 'read uncommitted')")


def _lock_check(name: str, child: str, col: str, parent: str, retry: bool) -> str:
    """Lock the statement's distinct parents ``FOR KEY SHARE`` and count the rows that very
    statement locked (``GET DIAGNOSTICS … ROW_COUNT``): a parent counted is a parent locked,
    so none can be deleted before this transaction ends. Fewer than referenced: under READ
    COMMITTED, once more with a new snapshot (a parent committed since the statement
    began), then refused."""
    lock = (f"PERFORM 1 FROM {parent} p WHERE p.id IN (SELECT DISTINCT a.{col} FROM added a) "
            f"FOR KEY SHARE; GET DIAGNOSTICS got = ROW_COUNT;")
    again = f"\n  IF got < wanted AND {READ_COMMITTED} THEN {lock} END IF;" if retry else ""
    return (f"SELECT count(DISTINCT a.{col}) INTO wanted FROM added a;\n  {lock}{again}\n"
            f"  IF got < wanted THEN\n    {_first_missing(col, parent)}\n"
            f"    {_violation(name, child, col, parent)}\n  END IF;")


def _first_missing(col: str, parent: str) -> str:
    """Into ``missing``: one value of ``col`` among the statement's new rows that
    ``parent`` does not hold (FOUND says whether there is one)."""
    return (f"SELECT a.{col}::text INTO missing FROM added a WHERE a.{col} IS NOT NULL AND "
            f"NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = a.{col}) LIMIT 1;")


def _child_function(child: str, schema: str) -> str:
    body = []
    for name, col, parent, lock in KEYS[child]:
        if lock:
            body.append(_lock_check(name, child, col, parent, retry=True))
            continue
        # recipients: not locked one by one under READ COMMITTED (a delete of recipients
        # waits for this transaction on its SHARE lock and then sees these rows); under a
        # snapshot isolation a recipient deleted after the snapshot would still be seen here,
        # so they are locked as a key would lock them (a concurrent delete then fails the
        # transaction with a serialization failure)
        body.append(
            f"IF {READ_COMMITTED} THEN\n    {_first_missing(col, parent)}\n"
            f"    IF FOUND THEN {_violation(name, child, col, parent)} END IF;\n"
            f"  ELSE\n  {_lock_check(name, child, col, parent, retry=False)}\n  END IF;")
    return _function(f"outreach_{child}_references", '\n  '.join(body), schema,
                     declare="missing text; wanted bigint; got bigint")


def _function(name: str, body: str, schema: str, declare: str | None = None) -> str:
    """A trigger function in PL/pgSQL, run with the rights of its owner (the tables' owner,
    who runs the migration), as a key's check is: a role allowed to insert deliveries need
    not be allowed to lock campaigns, and row-level security on a child table must not hide
    from a delete's check the rows that still name the parent (an owner's queries bypass it).
    Its tables are those of ``schema`` (the one the migration runs in), temporary tables
    last, so a session's temporary table of the same name cannot stand in for them
    (PostgreSQL manual, "Writing SECURITY DEFINER Functions Safely"). A trigger function
    cannot be called but by its trigger."""
    decl = f"DECLARE {declare};\n" if declare else ""
    path = '"' + schema.replace('"', '""') + '"'
    return (f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
            f"SET search_path = {path}, pg_temp AS $$\n{decl}BEGIN\n  {body}\n"
            f"  RETURN NULL;\nEND $$")


def _snapshot_refusal(what: str) -> str:
    """Refuse ``what`` outside READ COMMITTED: a later snapshot cannot be taken inside the
    function, and the transaction's own would miss rows committed since."""
    return (f"IF NOT {READ_COMMITTED} THEN RAISE EXCEPTION USING ERRCODE = "
            f"'feature_not_supported', MESSAGE = format('{what} of %s is checked against the "
            f"rows that refer to it only at isolation level READ COMMITTED (migration 0015), "
            f"not %s', TG_TABLE_NAME, current_setting('transaction_isolation')); END IF;")


def _parent_functions(parent: str, refs: list[tuple[str, str, str, bool]],
                      schema: str) -> list[str]:
    checks = ["IF NOT EXISTS (SELECT 1 FROM gone) THEN RETURN NULL; END IF;",
              _snapshot_refusal("a DELETE")]
    truncs = [_snapshot_refusal("a TRUNCATE")]
    for name, child, col, _lock in refs:
        checks.append(
            f"SELECT g.id::text INTO still FROM gone g WHERE EXISTS "
            f"(SELECT 1 FROM {child} c WHERE c.{col} = g.id) LIMIT 1;\n"
            f"  IF FOUND THEN RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', "
            f"MESSAGE = 'update or delete on table \"{parent}\" violates foreign key constraint "
            f"\"{name}\" on table \"{child}\"', DETAIL = format('Key (id)=(%s) is still "
            f"referenced from table \"{child}\".', still), CONSTRAINT = '{name}'; END IF;")
        # after every table of the TRUNCATE is emptied: children truncated with it are empty
        truncs.append(
            f"IF EXISTS (SELECT 1 FROM {child} WHERE {col} IS NOT NULL) THEN RAISE EXCEPTION "
            f"USING ERRCODE = 'feature_not_supported', MESSAGE = 'cannot truncate a table "
            f"referenced in a foreign key constraint', DETAIL = 'Table \"{child}\" references "
            f"\"{parent}\".', HINT = 'Truncate table \"{child}\" at the same time.'; END IF;")
    out = [_function(f"outreach_{parent}_deleted", '\n  '.join(checks), schema,
                     declare="still text"),
           _function(f"outreach_{parent}_truncated", '\n  '.join(dict.fromkeys(truncs)),
                     schema)]
    children = _unlocked_children(refs)
    if children:
        # before: wait for (and hold off) every transaction inserting children, so the check
        # after the statement sees all of them
        out.append(_function(f"outreach_{parent}_delete_lock",
                             f"LOCK TABLE {', '.join(children)} IN SHARE MODE;", schema))
    return out


def _frozen_function(schema: str) -> str:
    return _function("outreach_reference_frozen", (
        "RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = "
        "format('%s.%s never changes once written: the references between rows are "
        "checked when rows are added and removed (migration 0015)', TG_TABLE_NAME, TG_ARGV[0]);"),
        schema)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    schema = bind.exec_driver_sql('SELECT current_schema()').scalar_one()
    op.execute(_frozen_function(schema))
    for child, keys in KEYS.items():
        for name, _col, _parent, _lock in keys:
            op.execute(f'ALTER TABLE {child} DROP CONSTRAINT {name}')
        op.execute(_child_function(child, schema))
        op.execute(f'CREATE TRIGGER {child}_references AFTER INSERT ON {child} '
                   f'REFERENCING NEW TABLE AS added FOR EACH STATEMENT '
                   f'EXECUTE FUNCTION outreach_{child}_references()')
        cols = [col for _n, col, _p, _l in keys]
        for col in cols:
            op.execute(f'CREATE TRIGGER {child}_{col}_frozen BEFORE UPDATE OF {col} ON {child} '
                       f'FOR EACH ROW WHEN (OLD.{col} IS DISTINCT FROM NEW.{col}) '
                       f"EXECUTE FUNCTION outreach_reference_frozen('{col}')")
    for parent, refs in _parents().items():
        for sql in _parent_functions(parent, refs, schema):
            op.execute(sql)
        if _unlocked_children(refs):
            op.execute(f'CREATE TRIGGER {parent}_delete_lock BEFORE DELETE ON {parent} '
                       f'FOR EACH STATEMENT EXECUTE FUNCTION outreach_{parent}_delete_lock()')
        op.execute(f'CREATE TRIGGER {parent}_deleted AFTER DELETE ON {parent} '
                   f'REFERENCING OLD TABLE AS gone FOR EACH STATEMENT '
                   f'EXECUTE FUNCTION outreach_{parent}_deleted()')
        op.execute(f'CREATE TRIGGER {parent}_truncated AFTER TRUNCATE ON {parent} '
                   f'FOR EACH STATEMENT EXECUTE FUNCTION outreach_{parent}_truncated()')
        op.execute(f'CREATE TRIGGER {parent}_id_frozen BEFORE UPDATE OF id ON {parent} '
                   f'FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) '
                   f"EXECUTE FUNCTION outreach_reference_frozen('id')")


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for parent in _parents():
        for trig in ('delete_lock', 'deleted', 'truncated', 'id_frozen'):
            op.execute(f'DROP TRIGGER IF EXISTS {parent}_{trig} ON {parent}')
        for fn in ('delete_lock', 'deleted', 'truncated'):
            op.execute(f'DROP FUNCTION IF EXISTS outreach_{parent}_{fn}()')
    for child, keys in KEYS.items():
        op.execute(f'DROP TRIGGER IF EXISTS {child}_references ON {child}')
        for _n, col, _p, _l in keys:
            op.execute(f'DROP TRIGGER IF EXISTS {child}_{col}_frozen ON {child}')
        op.execute(f'DROP FUNCTION IF EXISTS outreach_{child}_references()')
        for name, col, parent, _lock in keys:
            op.execute(f'ALTER TABLE {child} ADD CONSTRAINT {name} FOREIGN KEY ({col}) '
                       f'REFERENCES {parent} (id)')
    op.execute('DROP FUNCTION IF EXISTS outreach_reference_frozen()')
