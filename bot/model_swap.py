"""Hot model swap: the running server follows the registry's active model.

Whoever activates a version (a promotion after ``teller retrain``, ``/teller retrain``, or a
rollback with ``teller models activate``) only moves the registry's ``ACTIVE`` pointer; the server
notices within seconds and swaps its policy. The swap is one attribute assignment on the core:
a batch that has started finishes on the model it started with, the next one uses the new model,
so no message is dropped or answered twice and nothing restarts.

The same watcher picks up knowledge-base changes made by another process (``teller kb add``,
``teller review wrong`` in a terminal): SQLite tells when another connection committed, and only
then are the entries and the index read again. Whenever the knowledge base's revision moves (a
change from any process, this one included), the thresholds that depend on it are re-fitted in this
background thread (:func:`bot.assistant.follow_kb`, seconds) and take effect on the next message.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from bot.assistant import build_policy, follow_kb
from bot.core import TellerCore
from bot.settings import Settings
from nlu import ModelRegistry

log = logging.getLogger(__name__)


class ModelSwapper:
    """Keeps ``core.policy`` on the active model and its knowledge base current; ``sync()`` and
    ``refresh_kb()`` on demand, or a watcher thread."""

    name = "model-swap"

    def __init__(self, settings: Settings, core: TellerCore, interval: float = 2.0) -> None:
        self.settings = settings
        self.core = core
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: str | None = None

    def sync(self) -> str | None:
        """Swap to the registry's active version if it is not the one being served; returns it."""
        with self._lock:
            active = ModelRegistry(self.settings.models).active_version()
            current = self.core.policy
            if active is None or active == current.classifier.version:
                return None
            # Same knowledge base object: entries added since start-up stay, nothing is re-indexed.
            policy = build_policy(self.settings, version=active, kb=current.kb)
            self.core.policy = policy
            log.info(
                "model_swapped",
                extra={"fields": {"from": current.classifier.version, "to": policy.classifier.version}},
            )
            return active

    def refresh_kb(self) -> bool:
        """Reload the served knowledge base if another process changed it, and re-fit the policy's
        knowledge-base thresholds if it changed at all; returns whether anything changed."""
        reloaded = self.core.policy.kb.refresh()
        refitted = follow_kb(self.core.policy)
        return reloaded or bool(refitted)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh_kb()
            except Exception as exc:  # a broken knowledge base must not stop the model watch
                log.error("kb_refresh_failed", extra={"fields": {"error": repr(exc)[:300]}})
            active = ModelRegistry(self.settings.models).active_version()
            if active is not None and active == self._failed:
                continue  # reported once; wait for the pointer to move
            try:
                self.sync()
            except Exception as exc:  # a broken version must not take the server down
                self._failed = active
                log.error(
                    "model_swap_failed", extra={"fields": {"version": active, "error": repr(exc)[:300]}}
                )

    async def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="teller-model-swap", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
