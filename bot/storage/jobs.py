"""Background jobs for ``teller worker``: a retrain requested from chat on any replica runs once, on a worker.

A replica enqueues; workers claim the oldest queued job of the kinds they run, one claimant per job
(a conditional UPDATE), and record the result. Web replicas never train.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.errors import InputError
from bot.storage import schema
from bot.storage.database import Database, inserted_id
from bot.storage.records import Job, JobStatus

_j = schema.jobs


class JobRepository:
    """Queue, claim and finish jobs. Thread-safe; safe across processes and replicas."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def enqueue(self, kind: str, params: dict[str, Any], requested_by: str | None = None) -> Job:
        with self.db.transaction() as connection:
            result = connection.execute(
                _j.insert().values(
                    kind=kind,
                    params=json.dumps(params, sort_keys=True),
                    status=JobStatus.QUEUED.value,
                    requested_by=requested_by,
                    created_at=self.db.clock.now(),
                )
            )
        return self.get(inserted_id(result))

    def claim(self, worker: str, kinds: tuple[str, ...]) -> Job | None:
        """Mark the oldest queued job of ``kinds`` running for ``worker`` and return it (None: none)."""
        for _ in range(5):  # another worker may claim the same one first; then try the next
            rows = self.db.rows(
                select(_j.c.id)
                .where(_j.c.status == JobStatus.QUEUED.value, _j.c.kind.in_(kinds))
                .order_by(_j.c.id)
                .limit(1)
            )
            if not rows:
                return None
            job_id = int(rows[0]["id"])
            with self.db.transaction() as connection:
                claimed = connection.execute(
                    _j.update()
                    .where(_j.c.id == job_id, _j.c.status == JobStatus.QUEUED.value)
                    .values(status=JobStatus.RUNNING.value, worker=worker, started_at=self.db.clock.now())
                )
            if claimed.rowcount == 1:
                return self.get(job_id)
        return None

    def report(self, job_id: int, progress: dict[str, Any]) -> None:
        """Record how far a running job is (kept in ``result`` until it finishes)."""
        with self.db.transaction() as connection:
            connection.execute(
                _j.update()
                .where(_j.c.id == job_id, _j.c.status == JobStatus.RUNNING.value)
                .values(result=json.dumps(progress, sort_keys=True))
            )

    def finish(self, job_id: int, ok: bool, result: dict[str, Any], only_running: bool = False) -> Job:
        """Record a job's outcome. ``only_running``: leave it alone if it has finished meanwhile."""
        condition = _j.c.id == job_id
        if only_running:
            condition = condition & (_j.c.status == JobStatus.RUNNING.value)
        with self.db.transaction() as connection:
            connection.execute(
                _j.update()
                .where(condition)
                .values(
                    status=(JobStatus.DONE if ok else JobStatus.FAILED).value,
                    result=json.dumps(result, sort_keys=True),
                    finished_at=self.db.clock.now(),
                )
            )
        return self.get(job_id)

    def get(self, job_id: int) -> Job:
        """Raises :class:`InputError` if there is no such job."""
        rows = self.db.rows(select(_j).where(_j.c.id == job_id))
        if not rows:
            raise InputError(f"no job {job_id}")
        return _job(rows[0])

    def active(self, kind: str) -> list[Job]:
        """Queued and running jobs of ``kind``, oldest first."""
        rows = self.db.rows(
            select(_j)
            .where(_j.c.kind == kind, _j.c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
            .order_by(_j.c.id)
        )
        return [_job(r) for r in rows]


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=int(row["id"]),
        kind=row["kind"],
        params=json.loads(row["params"] or "{}"),
        status=JobStatus(row["status"]),
        requested_by=row["requested_by"],
        created_at=row["created_at"],
        worker=row["worker"],
        result=None if row["result"] is None else json.loads(row["result"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
