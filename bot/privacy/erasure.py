"""Erasing one customer: everything Teller stored about them, in one transaction, with a receipt.

Asked for by an operator (``teller forget``, ``DELETE /api/customers/{channel}/{user_id}``) or, on
the web chat, by the customer themselves (``DELETE /api/conversation``, ``TELLER_CUSTOMER_ERASURE``).

A customer is a channel and that channel's user id, as the channels store it in
``messages.user_id`` and ``conversations.user_id``: the web chat's ``user_id``, a Telegram user id
(``from_user.id``; in a private chat it is also the chat id, the conversation's ``external_id``), a
Slack user id (``U…``; a DM conversation is keyed by its ``D…`` channel, a thread in a channel by
``channel:thread_ts``). Every message Teller stores for a customer carries their user id: what
they wrote, Teller's replies to it, and the messages relayed between them and an operator during a
handoff (the operator's too).

What goes, table by table (``bot/storage/schema.py``):

==================== =========================================================================
messages             the customer's messages, Teller's replies to them, relays in their handoffs
outbox, deliveries   of those messages; the notices of their handoffs' end (closed, expired);
                     the acknowledgements of their feedback sent as text (``fb:…``)
feedback             on those replies, and any the customer gave on other replies of the channel
flags                operators' flags on those replies
outcomes             business outcomes recorded on those replies (an adviser call booked, ...)
review_sources       the filing of those messages in the review queue
review_items         items left with no source; an item that still files other customers'
                     messages keeps them, and takes one of their texts if its own was the
                     customer's (near-identical by construction: that is why they were merged)
corrections          of removed items, and those made straight from the customer's messages
                     (``message_id``): deleted, with the proposals made from them (corrections
                     proposed from them keep their own words, not the link); of kept items:
                     their text replaced like the item's (models trained before keep what they
                     learned until the next retrain)
correction_proposals to correct the customer's messages (they quote them)
handoffs             the customer's (``customer_user_id``), open or closed
conversations        those left with no message and no handoff; one that still holds other
                     people's messages (a Telegram group the customer started) keeps them, and
                     its ``user_id`` is cleared
==================== =========================================================================

Changed:

==================== =========================================================================
briefs               positioning briefs quoting the customer's messages among their candidate
                     new needs: each quote replaced by “[erased]” (:mod:`bot.privacy.briefs`;
                     ``briefs_rewritten``); after the commit, the brief files under
                     ``TELLER_HOME/briefs/`` that are copies of them are rewritten too, their
                     HTML rendered again (``brief_files_rewritten``; a dry run counts them)
==================== =========================================================================

Kept, table by table, and said so in the receipt when it applies:

==================== =========================================================================
interviews,          a product manager's positioning work (the bank's, not a customer's data;
interview_turns      the answers are redacted on receipt), and the rest of every brief
kb_changes           the knowledge base's log: operators' entries written from a review item
                     the customer's messages were filed under may use their words as phrasings;
                     the receipt lists them (``kb_entries``) for an operator to review
                     (``teller kb list``, ``teller kb remove``); their ids come from the
                     operator's answer (entries made before session 52: from the customer's text)
audit_log            append-only (the database's triggers refuse changes); it never holds the id
                     in clear
deployment, jobs     settings and retrain jobs: operators' and the system's, no customer data
==================== =========================================================================

Written: ``erased_threads``, the ops-channel thread (channel id and thread ts) of each handoff open
when the customer is erased, and when; nothing of the customer's. An operator who replies in that
thread afterwards is told there that the reply was not delivered
(:meth:`bot.ops_desk.OpsDesk.operator_reply`), instead of it vanishing as chatter; retention
removes the row after its cutoff.

And outside the database: Slack's ops channel (handoff threads, review posts), the customer's own
chat app, backups, log files, and briefs already shared (uploaded to a Slack DM, downloaded) or kept
on another replica's disk. A correction superseded by one that is deleted stays superseded (the
operator's later decision stands).

The audit entry (:class:`~bot.storage.AuditAction` ``erasure``) and the receipt name the customer
by a keyed pseudonym, never in clear: HMAC-SHA256 of ``"<channel>:<user id>"`` under a random
per-installation key created once in the deployment settings (``privacy_pseudonym_key``), as
``p_`` and the first 32 hex digits. Anyone who holds the id and can run ``teller audit --channel C
--user U`` can check it was erased; the log alone names nobody, and ids (phone-number-like on some
platforms) cannot be guessed back through it without the key. Erasing a customer Teller never
heard of is not an error: the receipt says zero everywhere, and it is audited all the same.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from bot.core import FEEDBACK_TURN
from bot.errors import InputError
from bot.privacy.briefs import BriefFiles, BriefRewrite, rewrite_brief_files
from bot.privacy.purge import CorrectionFate, Removed, chunks, purge_messages, rowcount
from bot.storage import AuditAction, HandoffStatus, Store, StoreError, schema

log = logging.getLogger(__name__)

#: The deployment setting holding the pseudonym key (64 hex digits), created on first use.
PSEUDONYM_KEY = "privacy_pseudonym_key"
#: The channels customers reach Teller on.
CHANNELS = ("web", "telegram", "slack", "terminal")
#: The counts a receipt reports, in this order.
KINDS = (
    "messages",
    "conversations",
    "conversations_anonymised",
    "feedback",
    "flags",
    "review_sources",
    "review_items",
    "review_items_rewritten",
    "corrections",
    "corrections_rewritten",
    "proposals",
    "handoffs",
    "deliveries",
    "outbox",
    "outcomes",
    "briefs_rewritten",
    "brief_files_rewritten",
)
#: The notices a handoff's customer is sent when it ends, each recorded as a delivery of
#: ``"<handoff id>:<end>"`` (to the customer's address): an operator closed it (``closed``,
#: :meth:`bot.ops_desk.OpsDesk.close_handoff`) or it expired idle (``expired``,
#: :meth:`bot.ops_desk.OpsDesk.expire_idle`).
NOTICES = ("closed", "expired")
#: Tries when the customer writes while being erased (a new message's row refers to a
#: conversation the erasure removes: the database refuses, and the erasure starts again).
ATTEMPTS = 3

_m, _c, _h = schema.messages, schema.conversations, schema.handoffs
_d, _f, _e = schema.deliveries, schema.feedback, schema.erased_threads

ALWAYS = (
    "Copies Teller posted to the Slack ops channel (handoff threads, review items) are Slack's "
    "and are not deleted by Teller; remove them in Slack if they must go.",
    "The customer's own chat history on their platform (Telegram, Slack) is the platform's.",
    "Database backups and log files keep what they hold until they expire.",
)


@dataclass(frozen=True)
class ErasureReceipt:
    """What erasing one customer removed: rows per kind, when, by whom, for which pseudonym."""

    channel: str
    subject: str
    actor: str
    at: str
    counts: dict[str, int]
    #: Knowledge-base entries operators wrote from review items the customer's messages were filed
    #: under: their phrasings may hold the customer's words (review with ``teller kb list``).
    kb_entries: tuple[str, ...] = ()
    caveats: tuple[str, ...] = ()
    dry_run: bool = False
    audit_id: int | None = None
    #: The ops-channel threads (channel id, thread ts) of the customer's handoffs that were open:
    #: a running service tells the operators there that the handoff went with the customer.
    open_threads: tuple[tuple[str, str], ...] = ()

    @property
    def total(self) -> int:
        """Rows removed or changed, all kinds together."""
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "subject": self.subject,
            "actor": self.actor,
            "at": self.at,
            "dry_run": self.dry_run,
            "counts": dict(self.counts),
            "kb_entries": list(self.kb_entries),
            "caveats": list(self.caveats),
            "audit_id": self.audit_id,
        }

    def audit_details(self) -> dict[str, Any]:
        """What the audit entry keeps of the receipt: the knowledge-base entries by number only
        (their ids are made from customers' questions)."""
        details = self.to_dict()
        del details["audit_id"], details["subject"], details["actor"], details["at"], details["dry_run"]
        details["kb_entries"] = len(self.kb_entries)
        return details


class _DryRun(Exception):
    def __init__(self, receipt: ErasureReceipt) -> None:
        super().__init__("dry run")
        self.receipt = receipt


def pseudonym(store: Store, channel: str, user_id: str) -> str:
    """The customer's keyed pseudonym (``p_`` and 32 hex digits), the installation's key created on
    first use."""
    deployment = store.deployment
    key = deployment.get(PSEUDONYM_KEY) or deployment.setdefault(
        PSEUDONYM_KEY, secrets.token_hex(32), actor="system:privacy"
    )
    digest = hmac.new(bytes.fromhex(key.value), f"{channel}:{user_id}".encode(), hashlib.sha256)
    return "p_" + digest.hexdigest()[:32]


def customer(channel: str, user_id: str) -> tuple[str, str]:
    """``(channel, user_id)`` checked: a known channel, an id that is not blank. Raises
    :class:`InputError`. The id is kept exactly as given, spaces included: the channels store ids
    as they come (the web chat's ``" alice"`` is another customer than ``"alice"``), and an erasure
    that trimmed it would find nothing and report zeros."""
    channel = channel.strip().lower()
    if channel not in CHANNELS:
        raise InputError(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")
    if not user_id.strip():
        raise InputError("the user id is empty")
    return channel, user_id


class Eraser:
    """Erases customers from a store (and their words from the brief files under ``briefs``,
    ``TELLER_HOME/briefs``; None: the database's briefs only, and the receipt says the files were
    not checked). Thread-safe."""

    def __init__(self, store: Store, briefs: Path | None = None) -> None:
        self.store = store
        self.briefs = briefs

    def erase(self, channel: str, user_id: str, actor: str, dry_run: bool = False) -> ErasureReceipt:
        """Erase everything stored about ``user_id`` on ``channel`` (see the module's table) in one
        transaction with its audit entry, then rewrite the brief files that quoted them; ``dry_run``
        counts the same rows and files and changes nothing (and is not audited). Raises
        :class:`InputError` (unknown channel, empty id) or :class:`StoreError`; a brief file that
        cannot be rewritten is reported in the receipt's caveats (and logged), not raised."""
        channel, user_id = customer(channel, user_id)
        subject = pseudonym(self.store, channel, user_id)
        for attempt in range(1, ATTEMPTS + 1):
            briefs: dict[int, BriefRewrite] = {}
            try:
                with self.store.database.transaction() as connection:
                    receipt = self._erase(connection, channel, user_id, subject, actor, dry_run, briefs)
                    if dry_run:
                        raise _DryRun(receipt)
                    entry = self.store.audit.record_in(
                        connection, actor, AuditAction.ERASURE, subject, receipt.audit_details()
                    )
            except _DryRun as preview:
                return self._with_files(preview.receipt, briefs, dry_run=True)
            except IntegrityError:
                if attempt == ATTEMPTS:
                    raise StoreError(
                        "the customer kept writing while being erased; nothing was erased, try again"
                    ) from None
                continue
            receipt = self._with_files(replace(receipt, audit_id=entry.id), briefs, dry_run=False)
            self.store.database.reclaim()  # the erased rows' bytes out of the SQLite files at once
            log.warning(
                "customer_erased",
                extra={
                    "fields": {
                        "subject": subject,
                        "actor": actor,
                        "rows": receipt.total,
                        "briefs": receipt.counts["briefs_rewritten"],
                        "brief_files": receipt.counts["brief_files_rewritten"],
                        "audit": entry.id,
                    }
                },
            )
            return receipt
        raise AssertionError("unreachable")

    def _with_files(
        self, receipt: ErasureReceipt, briefs: dict[int, BriefRewrite], dry_run: bool
    ) -> ErasureReceipt:
        """``receipt`` with the brief files rewritten (or, ``dry_run``, that would be) counted, and
        said in its caveats (the audit entry, written before, counts the rows)."""
        files = rewrite_brief_files(self.briefs, briefs.values(), dry_run=dry_run)
        counts = {**receipt.counts, "brief_files_rewritten": files.rewritten}
        return replace(
            receipt,
            counts=counts,
            caveats=(*_brief_caveats(len(briefs), files, self.briefs), *receipt.caveats),
        )

    def _erase(
        self,
        connection: Connection,
        channel: str,
        user_id: str,
        subject: str,
        actor: str,
        dry_run: bool,
        briefs: dict[int, BriefRewrite],
    ) -> ErasureReceipt:
        removed = Removed()
        kb_entries: set[str] = set()
        mine = and_(_m.c.channel == channel, _m.c.user_id == user_id)
        handoffs = [
            str(h)
            for h in connection.execute(
                select(_h.c.id).where(_h.c.channel == channel, _h.c.customer_user_id == user_id)
            ).scalars()
        ]
        # Where an open handoff is relayed, so that an operator still replying there is told it went
        # nowhere (nothing of the customer's is kept: the thread and when).
        threads = {
            (str(ops_channel or ""), str(ts))
            for ops_channel, ts in connection.execute(
                select(_h.c.ops_channel, _h.c.thread_ts).where(
                    _h.c.channel == channel,
                    _h.c.customer_user_id == user_id,
                    _h.c.status == HandoffStatus.OPEN.value,
                    _h.c.thread_ts.is_not(None),
                )
            )
        }
        if threads:
            now = self.store.database.clock.now()
            connection.execute(
                self.store.database.insert(_e)
                .values([{"ops_channel": c, "thread_ts": ts, "erased_at": now} for c, ts in sorted(threads)])
                .on_conflict_do_nothing()
            )
        conversations = set(
            connection.execute(select(_m.c.conversation_id).where(mine).distinct()).scalars()
        ) | set(
            connection.execute(
                select(_c.c.id).where(_c.c.channel == channel, _c.c.user_id == user_id)
            ).scalars()
        )
        for chunk in chunks(handoffs):
            conversations.update(
                connection.execute(select(_h.c.conversation_id).where(_h.c.id.in_(chunk))).scalars()
            )
        # The acknowledgements of the customer's verdicts sent as a message's text, recorded as
        # deliveries "fb:<channel>:<platform id>" (the platform id holds their chat: a Telegram
        # private chat's id is the user's own). Read before the verdicts go.
        acknowledged = [
            f"{FEEDBACK_TURN}{c}:{pid}"
            for c, pid in connection.execute(
                select(_f.c.channel, _f.c.platform_id).where(
                    _f.c.user_id == user_id, _f.c.channel == channel, _f.c.platform_id.is_not(None)
                )
            )
        ]
        for chunk in chunks(acknowledged):
            removed.deliveries += rowcount(connection.execute(delete(_d).where(_d.c.message_id.in_(chunk))))
        # The customer's verdicts on other people's replies (a Telegram group, a Slack thread).
        removed.feedback += rowcount(
            connection.execute(
                delete(_f).where(
                    _f.c.user_id == user_id,
                    _f.c.message_id.in_(select(_m.c.id).where(_m.c.channel == channel)),
                )
            )
        )
        ids = [str(i) for i in connection.execute(select(_m.c.id).where(mine)).scalars()]
        # Quotes of them in positioning briefs are replaced before the messages go.
        purge_messages(connection, ids, CorrectionFate.DELETE, removed, kb_entries, briefs)
        for chunk in chunks(handoffs):
            notices = [f"{h}:{end}" for h in chunk for end in NOTICES]
            removed.deliveries += rowcount(connection.execute(delete(_d).where(_d.c.message_id.in_(notices))))
            removed.handoffs += rowcount(connection.execute(delete(_h).where(_h.c.id.in_(chunk))))
        used = or_(
            exists().where(_m.c.conversation_id == _c.c.id), exists().where(_h.c.conversation_id == _c.c.id)
        )
        for chunk in chunks(sorted(str(c) for c in conversations)):
            removed.conversations += rowcount(connection.execute(delete(_c).where(_c.c.id.in_(chunk), ~used)))
            removed.conversations_anonymised += rowcount(
                connection.execute(
                    update(_c)
                    .where(_c.c.id.in_(chunk), _c.c.channel == channel, _c.c.user_id == user_id)
                    .values(user_id=None)
                )
            )
        return ErasureReceipt(
            channel=channel,
            subject=subject,
            actor=actor,
            at=self.store.database.clock.now(),
            counts=removed.counts(KINDS),
            kb_entries=tuple(sorted(kb_entries)),
            caveats=self._caveats(connection, channel, user_id, removed, kb_entries, len(threads)),
            dry_run=dry_run,
            open_threads=tuple(sorted(threads)),
        )

    def _caveats(
        self,
        connection: Connection,
        channel: str,
        user_id: str,
        removed: Removed,
        kb_entries: set[str],
        open_threads: int = 0,
    ) -> tuple[str, ...]:
        caveats: list[str] = []
        form = _ID_FORMS.get(channel)
        if not removed.total and form is not None and not form[0].fullmatch(user_id):
            caveats.append(
                f"Nothing is stored under this id, and it cannot be a {channel} user id: {form[1]}. "
                "Find the customer's id in the conversation (teller history) and erase that."
            )
        if open_threads:
            caveats.append(
                f"{open_threads} handoff(s) of this customer's open: the erasure keeps where their "
                "ops-channel thread is, and when (nothing of the customer's), so that an operator "
                "replying there is told the reply was not delivered."
            )
        if removed.corrections or removed.corrections_rewritten:
            caveats.append(
                "Corrections made from this customer's messages are gone from the store, but a model "
                "already trained on them keeps what it learned until the next retrain (teller retrain), "
                "and every model version trained on them keeps their text in its files "
                "(corrections.csv) until that version is deleted (teller models prune)."
            )
        if kb_entries:
            caveats.append(
                "Knowledge-base entries operators wrote from review items that held this customer's "
                f"messages may use their words as phrasings: the {len(kb_entries)} listed in this "
                "receipt's kb_entries (review them with teller kb list; teller kb remove ID)."
            )
        key = f"{channel}:{user_id}"
        interviews = connection.execute(
            select(func.count()).select_from(schema.interviews).where(schema.interviews.c.user_id == key)
        ).scalar_one()
        if interviews:
            caveats.append(
                f"{interviews} positioning interview(s) run by this user id as a product manager are "
                "kept: they are the bank's work, not customer data."
            )
        return (*caveats, *ALWAYS)


#: The user ids a channel stores, and how to tell them in words: an operator erasing a Telegram
#: customer by "@john" (a username, which Teller never stores) was given a receipt of zeros and no
#: hint that nothing of theirs could have been found. (The caveat names no id: the receipt's
#: caveats are in the audit entry, which holds the customer's pseudonym only.)
_ID_FORMS: dict[str, tuple[re.Pattern[str], str]] = {
    "telegram": (re.compile(r"[0-9]{1,20}"), "Telegram's are numbers (e.g. 123456789), not @usernames"),
    "slack": (re.compile(r"[UW][A-Z0-9]{2,30}"), "Slack's begin with U or W (e.g. U024BE7LH), not @names"),
}


def _brief_caveats(briefs: int, files: BriefFiles, root: Path | None) -> tuple[str, ...]:
    """What the receipt says of the positioning briefs that quoted the customer: ``briefs`` rows
    changed, ``files`` as :func:`bot.privacy.briefs.rewrite_brief_files` left them."""
    if not briefs:
        return ()
    where = (
        f"in {files.rewritten} brief file(s) under {root}"
        if files.checked
        else "in the database only: no brief files were checked (no briefs directory given)"
    )
    said = [
        f"{briefs} positioning brief(s) quoted this customer's messages: each quote now reads "
        f"“[erased]”, {where}. Copies shared before (uploaded to a Slack DM, downloaded) or on "
        "another replica's disk are not reached: `teller brief ID` writes a brief again."
    ]
    if files.failed:
        said.append(
            f"{len(files.failed)} brief file(s) could not be rewritten (logged as brief_file_rewrite_failed) "
            "and still quote this customer: " + ", ".join(files.failed) + "; delete them or write "
            "the brief again."
        )
    return tuple(said)
