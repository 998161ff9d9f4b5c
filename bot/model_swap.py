"""Hot model swap: every running replica follows the active model the database records.

Whoever activates a version (a promotion after ``teller retrain``, ``/teller retrain``, or a
rollback with ``teller models activate``) moves the registry's ``ACTIVE`` pointer and records the
version in the database (:func:`bot.assistant.activate_model`); every replica notices within
seconds and swaps its policy, loading the artifact from ``TELLER_MODELS`` (shared storage when
replicas run on several hosts). The swap is one attribute assignment on the core:
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

from bot.assistant import active_version, build_policy, follow_kb, replicate_kb
from bot.core import TellerCore
from bot.settings import Settings

log = logging.getLogger(__name__)


class ModelSwapper:
    """Keeps ``core.policy`` on the active model and its knowledge base current; ``sync()`` and
    ``refresh_kb()`` on demand, or a watcher thread."""

    name = "model-swap"

    def __init__(self, settings: Settings, core: TellerCore, interval: float = 1.0) -> None:
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
            active = active_version(self.settings, self.core.store)
            current = self.core.policy
            if active is None or active == current.classifier.version:
                return None
            # Same knowledge base object: entries added since start-up stay, nothing is re-indexed.
            policy = build_policy(self.settings, version=active, kb=current.kb, refit_kb=False)
            self.core.policy = policy
            # The knowledge base's thresholds for the new model are re-fitted right after (seconds);
            # meanwhile the model's own calibration serves.
            follow_kb(policy)
            log.info(
                "model_swapped",
                extra={"fields": {"from": current.classifier.version, "to": policy.classifier.version}},
            )
            return active

    def refresh_kb(self) -> bool:
        """Reload the served knowledge base if another process changed it, and re-fit the policy's
        knowledge-base thresholds if it changed at all; returns whether anything changed."""
        kb = self.core.policy.kb
        reloaded = kb.refresh()
        replicated = replicate_kb(kb)
        refitted = follow_kb(self.core.policy)
        return reloaded or bool(replicated and (replicated.applied or replicated.published)) or bool(refitted)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh_kb()
            except Exception as exc:  # a broken knowledge base must not stop the model watch
                log.error("kb_refresh_failed", extra={"fields": {"error": repr(exc)[:300]}})
            try:
                active = active_version(self.settings, self.core.store)
            except Exception as exc:  # the database briefly unreachable: try again next round
                log.error("active_model_unknown", extra={"fields": {"error": repr(exc)[:300]}})
                continue
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
