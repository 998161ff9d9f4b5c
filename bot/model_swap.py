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

It also keeps the policy's override memory on the operators' corrections in force
(:class:`bot.corrections.CorrectionFollower`): one ``max(id)`` query a round, the texts embedded
again only when a correction was stored anywhere; a swapped-in policy takes the memory over.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from bot.assistant import active_version, build_policy, follow_kb, replicate_kb
from bot.core import TellerCore
from bot.corrections import CorrectionFollower
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
        # Re-fits (seconds to tens of seconds for a new model) run here, off the watch loop, so an
        # activation that follows another one is still picked up within a second.
        self._refitter: threading.Thread | None = None
        self._refit_wanted = threading.Event()
        #: The served policy's override memory follows the corrections table.
        self.corrections = CorrectionFollower(core.store, lambda: self.core.policy)

    def _refit_in_background(self) -> None:
        """Re-fit the served policy's knowledge-base thresholds on the refit thread (coalesced: one
        re-fit at a time, one more queued at most, always for the policy served then)."""
        self._refit_wanted.set()
        if self._refitter is not None and self._refitter.is_alive():
            return

        def work() -> None:
            while self._refit_wanted.is_set() and not self._stop.is_set():
                self._refit_wanted.clear()
                try:
                    follow_kb(self.core.policy)
                except Exception as exc:  # a failed fit leaves the previous thresholds serving
                    log.error("kb_refit_failed", extra={"fields": {"error": repr(exc)[:300]}})

        self._refitter = threading.Thread(target=work, name="teller-kb-refit", daemon=True)
        self._refitter.start()

    def sync(self, background: bool = False) -> str | None:
        """Swap to the active version (:func:`bot.assistant.active_version`) if it is not the one
        being served; returns it. The knowledge-base thresholds for the new model are re-fitted
        after the swap: here, or on the refit thread if ``background``."""
        with self._lock:
            active = active_version(self.settings, self.core.store)
            current = self.core.policy
            if active is None or active == current.classifier.version:
                return None
            # Same knowledge base object: entries added since start-up stay, nothing is re-indexed.
            policy = build_policy(self.settings, version=active, kb=current.kb, refit_kb=False)
            policy.corrections = current.corrections  # base-encoder vectors: valid for any model
            self.core.policy = policy
            log.info(
                "model_swapped",
                extra={"fields": {"from": current.classifier.version, "to": policy.classifier.version}},
            )
        # Meanwhile the model's own calibration serves.
        if background:
            self._refit_in_background()
        else:
            follow_kb(policy)
        return active

    def refresh_kb(self, background: bool = False) -> bool:
        """Reload the served knowledge base if another process changed it (or the change log has
        news), and re-fit the policy's knowledge-base thresholds if it changed at all (here, or on
        the refit thread if ``background``); returns whether anything changed here."""
        kb = self.core.policy.kb
        reloaded = kb.refresh()
        replicated = replicate_kb(kb)
        changed = reloaded or bool(replicated and (replicated.applied or replicated.published))
        if background:
            if self.core.policy.kb_fit != (self.core.policy.classifier.version, kb.revision):
                self._refit_in_background()
            return changed
        return changed or bool(follow_kb(self.core.policy))

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh_kb(background=True)
            except Exception as exc:  # a broken knowledge base must not stop the model watch
                log.error("kb_refresh_failed", extra={"fields": {"error": repr(exc)[:300]}})
            try:
                self.corrections.refresh()
            except Exception as exc:  # the database briefly unreachable: the memory stays as it was
                log.error("corrections_refresh_failed", extra={"fields": {"error": repr(exc)[:300]}})
            try:
                active = active_version(self.settings, self.core.store)
            except Exception as exc:  # the database briefly unreachable: try again next round
                log.error("active_model_unknown", extra={"fields": {"error": repr(exc)[:300]}})
                continue
            if active is not None and active == self._failed:
                continue  # reported once; wait for the pointer to move
            try:
                self.sync(background=True)
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
