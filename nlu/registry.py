"""Versioned intent models under ``<models>/intent/`` and the pointer to the active one."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from nlu.artifact import ArtifactInfo, read_info
from nlu.errors import ArtifactError, ModelNotFoundError

ACTIVE_FILE = "ACTIVE"


@dataclass(frozen=True)
class ModelVersion:
    info: ArtifactInfo
    path: Path
    active: bool


class ModelRegistry:
    """Lists, names and activates the artifacts in one directory."""

    def __init__(self, models_dir: str | Path) -> None:
        self.root = Path(models_dir) / "intent"

    def new_version(self, data_hash: str) -> str:
        """A fresh version name: UTC time of creation and the start of the data hash."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        version, n = f"{stamp}-{data_hash[:6]}", 1
        while (self.root / version).exists():
            n += 1
            version = f"{stamp}-{data_hash[:6]}-{n}"
        return version

    def path(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise ModelNotFoundError(f"invalid model version {version!r}")
        path = self.root / version
        if not (path / "teller_model.json").is_file():
            raise ModelNotFoundError(f"no model version {version!r} in {self.root}")
        return path

    def active_version(self) -> str | None:
        try:
            version = (self.root / ACTIVE_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return version or None

    def active_path(self) -> Path:
        version = self.active_version()
        if version is None:
            # The directory in full: the default `models` is relative to the current directory, and
            # a trial run from elsewhere was sent to a 5-minute retrain instead of to TELLER_MODELS.
            raise ModelNotFoundError(
                f"no active intent model in {self.root.absolute()}; set TELLER_MODELS to the directory "
                "that holds `intent/` (the default, `models`, is relative to the current directory), "
                "or train one with `teller train`"
            )
        try:
            return self.path(version)
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"the active model {version!r} is missing from {self.root}; "
                "activate another with `teller models activate VERSION` or run `teller train`"
            ) from None

    def activate(self, version: str) -> Path:
        """Point ``ACTIVE`` at ``version``; the switch is a single atomic rename."""
        path = self.path(version)
        read_info(path)
        pointer = self.root / ACTIVE_FILE
        staging = self.root / f".{ACTIVE_FILE}.{os.getpid()}"
        staging.write_text(version + "\n", encoding="utf-8")
        os.replace(staging, pointer)
        return path

    def versions(self) -> list[ModelVersion]:
        """Every readable artifact, oldest first."""
        if not self.root.is_dir():
            return []
        active = self.active_version()
        found = []
        for child in self.root.iterdir():
            if child.name.startswith(".") or not child.is_dir():
                continue
            with contextlib.suppress(ArtifactError):
                found.append(ModelVersion(read_info(child), child, child.name == active))
        return sorted(found, key=lambda v: (v.info.created_at, v.info.version))

    def prune(self, keep: int = 2, dry_run: bool = False) -> list[ModelVersion]:
        """Delete every version but the active one and the ``keep`` newest others (rollback targets).

        Returns what was (or, with ``dry_run``, would be) deleted, oldest first. Each version is
        renamed to a hidden name before it is removed, so a half-deleted directory is never listed.
        Run it under :func:`nlu.retraining.retrain_lock`, or a candidate registered by a retrain in
        progress could go before it is activated.
        """
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, got {keep}")
        others = [v for v in self.versions() if not v.active]
        doomed = others[: max(0, len(others) - keep)]
        if dry_run:
            return doomed
        for version in doomed:
            trash = self.root / f".trash-{version.path.name}-{os.getpid()}"
            os.replace(version.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return doomed
