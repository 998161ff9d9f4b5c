"""Running Teller as several processes: ``teller db`` (migrations) and ``teller worker`` (retrains)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer

from bot.cli.app import JsonOpt, app, emit_json, err, out
from bot.settings import get_settings

log = logging.getLogger(__name__)
db_app = typer.Typer(help="The database: migrations and what it holds.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Apply every pending migration (TELLER_DATABASE_URL, or the SQLite file under TELLER_HOME).
    Idempotent; replicas also do this when they start."""
    from bot.storage import Database

    settings = get_settings()
    database = Database(settings.database, migrate=False)
    try:
        after = database.upgrade()
        # Read under the migration lock: of processes racing, only the one that migrated says so.
        before = database.migrated_from
    finally:
        database.close()
    if as_json:
        emit_json({"database": database.label, "from": before, "to": after})
        return
    if before == after:
        out.print(f"{database.label}: at revision {after} already.")
    else:
        out.print(f"{database.label}: upgraded from {before or 'empty'} to {after}.")


@db_app.command("status")
def db_status(as_json: JsonOpt = False) -> None:
    """Revision, the active model it records, how many rows each kind of data has, and how many
    outgoing messages are pending, delivered and failed (the newest failures with their reason).

    Read-only: a database behind this Teller's migrations is reported as such (``pending``), with
    nothing else read, and left as it is (`teller db upgrade` migrates it)."""
    from bot.storage import Database, DeliveryState, Store

    store = Store(Database(get_settings().database, migrate=False, read_only=True))
    behind: str | None = None  # what to do first, for a database not at this Teller's revision
    try:
        revision, head = store.database.revision(), store.database.head()
        newer = revision is not None and not store.database.knows(revision)
        record: dict[str, object] = {
            "database": store.database.label,
            "revision": revision,
            "head": head,
            "pending": revision != head and not newer,
            "newer": newer,
        }
        at = revision or "none (empty, or from before migrations)"
        if newer:
            behind = f"The database is at revision {at}, newer than this Teller's ({head}): upgrade Teller."
        elif revision != head:
            behind = (
                f"The database is at revision {at}, this Teller's is {head}: `teller db upgrade` "
                "migrates it (replicas also do when they start)."
            )
        else:  # only a database at this Teller's revision is read further
            record |= {
                "active_model": store.deployment.active_model(),
                "kb_log_seq": store.kb_log.head(),
                "counts": store.counts().__dict__,
                "deliveries": {state.value: n for state, n in store.deliveries.states().items()},
                "failed_deliveries": [
                    {"message_id": d.message_id, "channel": d.channel, "reason": d.reason, "at": d.updated_at}
                    for d in store.deliveries.recent(DeliveryState.FAILED, limit=5)
                ],
            }
    finally:
        store.close()
    if as_json:
        emit_json(record)
        return
    for key, value in record.items():
        out.print(f"{key}: {value}")
    if behind is not None:
        err.print(behind, soft_wrap=True)


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run the queued jobs there are now, then exit.")] = False,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between looks at the queue.")] = 2.0,
) -> None:
    """Run retrains queued from chat (TELLER_RETRAIN_IN=worker) so that web replicas never train.
    One retrain runs at a time across the cluster; several workers may run for availability."""
    from bot.assistant import build_policy, open_store
    from bot.kb_replication import origin
    from bot.operators import Operators
    from bot.retraining import RetrainRunner, work_one
    from bot.review import ReviewService
    from bot.storage import StoreError

    settings = get_settings()
    store = open_store(settings)
    review = ReviewService(store, lambda: build_policy(settings), None, Operators.from_settings(settings))
    runner = RetrainRunner(settings, review)
    name = f"worker@{origin()}"
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    if once:
        err.print(f"{name}: running the retrain jobs queued in {store.database.label}, then exiting.")
    else:
        err.print(f"{name}: waiting for retrain jobs in {store.database.label} (Ctrl-C stops).")
    ran = 0
    try:
        while not stop.is_set():
            try:
                job = work_one(store.jobs, runner, name, store.database)
            except StoreError as exc:  # the database briefly unreachable: wait and look again
                log.error("worker_store_unavailable", extra={"fields": {"error": str(exc)[:300]}})
                if once:
                    raise
                stop.wait(max(poll, 5.0))
                continue
            if job is not None:
                ran += 1
                out.print(f"Job {job.id} {job.status}: {(job.result or {}).get('message', '')}")
                continue
            if once:
                if not ran:
                    err.print("No retrain job was queued.")
                break
            stop.wait(poll)
    finally:
        store.close()


@db_app.command("bench")
def db_bench(
    url: Annotated[str, typer.Argument(help="An EMPTY scratch database: a SQLite path or postgresql://…")],
    seconds: Annotated[float, typer.Option(min=1, help="How long to write.")] = 10.0,
    threads: Annotated[int, typer.Option(min=1, max=64, help="Concurrent writers.")] = 8,
    as_json: JsonOpt = False,
) -> None:
    """The store's own ceiling: exchanges stored per second (a customer message and its reply, one
    transaction, as for every real message) from THREADS writers, write latency, history reads.
    Refuses a database that holds messages."""
    from bot.storage.bench import bench_store

    result = bench_store(url, seconds, threads)
    if as_json:
        emit_json(result.to_dict())
        return
    for key, value in result.to_dict().items():
        out.print(f"{key}: {value}")
