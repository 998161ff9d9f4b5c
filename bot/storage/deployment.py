"""Cluster-wide settings every replica follows: which model version is active, and who set it.

The registry's ``ACTIVE`` file (:class:`nlu.ModelRegistry`) says the same on the machine that
activated; the database says it to every replica, wherever its models directory is mounted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from bot.storage import schema
from bot.storage.database import Database

_d = schema.deployment
ACTIVE_MODEL = "active_model"


@dataclass(frozen=True)
class Setting:
    key: str
    value: str
    updated_at: str
    updated_by: str | None


class DeploymentRepository:
    """Key-value settings shared by every replica. Thread-safe."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def get(self, key: str) -> Setting | None:
        rows = self.db.rows(select(_d).where(_d.c.key == key))
        return Setting(**rows[0]) if rows else None

    def set(self, key: str, value: str, actor: str | None = None) -> Setting:
        """Insert or replace ``key``; returns the stored setting."""
        setting = Setting(key, value, self.db.clock.now(), actor)
        row = {"value": value, "updated_at": setting.updated_at, "updated_by": actor}
        insert = self.db.insert(_d).values(key=key, **row)
        with self.db.transaction() as connection:
            connection.execute(insert.on_conflict_do_update(index_elements=[_d.c.key], set_=row))
        return setting

    def setdefault(self, key: str, value: str, actor: str | None = None) -> Setting:
        """``key``'s setting; stored as ``value`` first if it has none. Replicas racing to create it
        all get the one that was stored first."""
        insert = self.db.insert(_d).values(
            key=key, value=value, updated_at=self.db.clock.now(), updated_by=actor
        )
        with self.db.transaction() as connection:
            connection.execute(insert.on_conflict_do_nothing(index_elements=[_d.c.key]))
            row = connection.execute(select(_d).where(_d.c.key == key)).mappings().one()
        return Setting(**row)

    def active_model(self) -> str | None:
        """The model version every replica should serve (None: never recorded; follow the registry)."""
        setting = self.get(ACTIVE_MODEL)
        return setting.value if setting else None

    def set_active_model(self, version: str, actor: str | None = None) -> Setting:
        return self.set(ACTIVE_MODEL, version, actor)
