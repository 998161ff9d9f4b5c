"""Retraining off the web replicas: a replica queues the job, ``teller worker`` claims and runs it
once, the replica reports progress and the outcome; one retrain at a time across the cluster."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from bot.retraining import BUSY, RETRAIN_JOB, RETRAIN_LOCK, QueuedRetrain, RetrainOutcome, work_one
from bot.storage import JobStatus, Store
from tests.test_cli import run

MIGRATIONS = Path(__file__).parents[1] / "bot" / "storage" / "migrations" / "versions"


class StubRunner:
    """Stands in for the retrain itself (minutes of training); reports two stages."""

    def __init__(self) -> None:
        self.modes: list[str] = []

    def run(self, progress, mode: str = "continue", lease=None, actor=None):  # type: ignore[no-untyped-def]
        assert lease is not None and lease.alive()  # the worker holds the retrain lock
        self.modes.append(mode)
        progress("training", 0.5)
        time.sleep(0.3)
        progress("gate", 0.95)
        return RetrainOutcome(True, "Promoted v2 (was v1).")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = (
        str(tmp_path / "t.db")
        if request.param == "sqlite"
        else request.getfixturevalue("fresh_postgresql_url")
    )
    return Store(url)


def test_a_queued_retrain_runs_once_on_a_worker_and_reports_back(store: Store) -> None:
    queued = QueuedRetrain(store.jobs, store.database, actor="slack:UOPS", poll=0.05)
    progress: list[tuple[str, float]] = []
    outcomes: list[RetrainOutcome] = []
    finished = threading.Event()
    assert queued.start(
        lambda s, f: progress.append((s, f)), lambda o: (outcomes.append(o), finished.set()), "scratch"
    )
    assert queued.running and not queued.start(None, None)  # one at a time, whoever asks
    runner = StubRunner()
    workers = [
        threading.Thread(target=lambda n=n: work_one(store.jobs, runner, f"w{n}", store.database))  # type: ignore[misc]
        for n in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert runner.modes == ["scratch"]  # three workers, one run
    assert finished.wait(10)
    assert outcomes[0].promoted and outcomes[0].message == "Promoted v2 (was v1)."
    assert not queued.running
    [job] = [store.jobs.get(1)]
    assert (
        job.status is JobStatus.DONE and job.worker in {"w0", "w1", "w2"} and job.requested_by == "slack:UOPS"
    )
    assert work_one(store.jobs, runner, "w0", store.database) is None  # nothing left


def test_a_crashing_retrain_fails_its_job_and_the_worker_goes_on(store: Store) -> None:
    class Broken:
        def run(self, progress, mode: str = "continue", lease=None, actor=None):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk full")

    store.jobs.enqueue(RETRAIN_JOB, {"mode": "continue"})
    job = work_one(store.jobs, Broken(), "w", store.database)  # type: ignore[arg-type]
    assert job is not None and job.status is JobStatus.FAILED and "disk full" in (job.result or {})["message"]


def test_one_retrain_at_a_time_across_processes(teller_env: Path) -> None:
    from bot.assistant import open_store
    from bot.settings import get_settings

    store = open_store(get_settings())
    lease = store.database.try_lock(RETRAIN_LOCK)
    assert lease is not None
    try:
        code, stdout, stderr = run("retrain", "--json")
        assert code != 0 and BUSY in stdout + stderr
    finally:
        lease.release()
        store.close()


def test_teller_worker_once_runs_what_is_queued_and_db_commands_report(teller_env: Path) -> None:
    head = max(p.name[:4] for p in MIGRATIONS.glob("[0-9]*.py"))  # the newest migration's revision
    # `db status` reads only: no database is made where there is none ...
    database = teller_env / "teller.db"
    database.unlink(missing_ok=True)
    code, _, stderr = run("db", "status")
    assert code == 2 and "no database there" in stderr and not database.exists()
    # ... and an empty one is reported as behind and left as it was, its journal mode too.
    sqlite3.connect(database).close()
    before = database.read_bytes()
    code, stdout, stderr = run("db", "status", "--json")
    assert code == 0 and '"revision": null' in stdout and '"pending": true' in stdout
    code, stdout, stderr = run("db", "status")
    assert code == 0 and "teller db upgrade" in stderr and "revision: None" in stdout
    assert database.read_bytes() == before
    code, stdout, _ = run("db", "upgrade", "--json")
    assert code == 0 and f'"to": "{head}"' in stdout
    code, stdout, _ = run("db", "upgrade")
    assert code == 0 and "already" in stdout
    code, stdout, _ = run("db", "status", "--json")
    assert code == 0 and f'"revision": "{head}"' in stdout and '"pending": false' in stdout
    assert '"counts"' in stdout
    # A database a newer Teller migrated: not "pending" (upgrading would fail), but newer.
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    code, stdout, stderr = run("db", "status", "--json")
    assert code == 0 and '"pending": false' in stdout and '"newer": true' in stdout
    assert "upgrade Teller" in run("db", "status")[2]
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = :head", {"head": head})
    code, stdout, stderr = run("worker", "--once")
    # Nothing queued: said so, not "waiting ... (Ctrl-C stops)" before exiting at once (a trial's finding).
    assert code == 0 and "No retrain job was queued." in stderr and "Ctrl-C" not in stderr


def test_a_job_whose_worker_died_is_failed_and_does_not_block_retraining(store: Store) -> None:
    from bot.retraining import ORPHANED

    queued = QueuedRetrain(store.jobs, store.database)
    job = store.jobs.enqueue(RETRAIN_JOB, {"mode": "continue"})
    assert store.jobs.claim("w-dead", (RETRAIN_JOB,)) is not None  # claimed, then the worker died
    lease = store.database.try_lock(RETRAIN_LOCK)  # while someone holds the lock, it is running
    assert lease is not None
    assert queued.running
    lease.release()
    assert not queued.running  # nobody holds the lock: the job is failed
    failed = store.jobs.get(job.id)
    assert failed.status is JobStatus.FAILED and (failed.result or {})["message"] == ORPHANED
    # ... and a worker holding the lock makes a queued job run, not a lost one.
    assert work_one(store.jobs, StubRunner(), "w", store.database) is None  # nothing queued


def test_a_retrain_finishing_while_orphans_are_looked_for_keeps_its_outcome(store: Store) -> None:
    """The worker finishes (and lets go of the lock) between the look at running jobs and taking
    the lock: its outcome stands, it is not overwritten as orphaned."""
    job = store.jobs.enqueue(RETRAIN_JOB, {"mode": "continue"})
    assert store.jobs.claim("w", (RETRAIN_JOB,)) is not None

    class Racing:
        def __init__(self) -> None:
            self.looks = 0

        def __getattr__(self, name: str) -> object:
            return getattr(store.jobs, name)

        def active(self, kind: str):  # type: ignore[no-untyped-def]
            seen = store.jobs.active(kind)
            self.looks += 1
            if self.looks == 1:  # the worker finishes right after this look
                store.jobs.finish(job.id, True, {"promoted": True, "message": "Promoted v2."})
            return seen

    queued = QueuedRetrain(Racing(), store.database)  # type: ignore[arg-type]
    assert not queued.running
    done = store.jobs.get(job.id)
    assert done.status is JobStatus.DONE and (done.result or {})["message"] == "Promoted v2."
