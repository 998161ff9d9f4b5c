"""A customer's right of access: everything Teller stores about one customer, as one document.

``teller access --channel C --user U`` answers a data-subject access request (GDPR Art. 15)
from the store, in one read transaction, and records it in the audit log (``access``) under the
customer's keyed pseudonym, as an erasure is (:mod:`bot.privacy.erasure`). The document holds, for
the customer named as ``teller forget`` names them:

- ``messages``: what they wrote and every message to them (Teller's replies, operators' relays),
  as stored, redaction applied, oldest first, with what answered each (route, intent, entry);
- ``feedback``: their verdicts and comments on replies (in a group, on others' replies too);
- ``handoffs``: their conversations handed to a person (when, and how they ended);
- ``outcomes``: business outcomes the bank recorded on replies to them (an adviser call booked).

Not in it, and said so in ``not_included``: copies outside the store (the ops channel, the
customer's chat app, backups, logs) and the operators' own records (review items, corrections,
knowledge-base entries), which an erasure handles as its receipt says.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.privacy.erasure import customer, pseudonym
from bot.storage import AuditAction, Store, schema

#: What the document says it does not hold.
NOT_INCLUDED = (
    "Copies outside Teller's database: posts in the bank's ops channel (Slack), the customer's own "
    "chat app, backups and log files.",
    "Operators' records made from the customer's messages (flags, review items, corrections, "
    "knowledge-base entries): the bank's, handled by an erasure as its receipt says.",
    "In a group chat, a message another member wrote while this customer's conversation was with a "
    "person is stored as theirs (relayed to the operator) and is in this document.",
)


def access_request(store: Store, channel: str, user_id: str, actor: str) -> dict[str, Any]:
    """The document (see the module's docstring) for ``user_id`` on ``channel`` (a stored id; a
    verified web customer's is resolved by the caller, as for erasure), audited as ``access`` by
    ``actor``. Raises :class:`~bot.errors.InputError` for an unknown channel or an empty id, and
    :class:`~bot.storage.StoreError` when the database fails."""
    channel, user_id = customer(channel, user_id)
    subject = pseudonym(store, channel, user_id)
    m, f, h, o = schema.messages, schema.feedback, schema.handoffs, schema.outcomes
    theirs = select(m.c.id).where(m.c.channel == channel, m.c.user_id == user_id)
    with store.database.transaction() as connection:
        messages = connection.execute(
            select(
                m.c.id,
                m.c.conversation_id,
                m.c.direction,
                m.c.text,
                m.c.route,
                m.c.intent,
                m.c.kb_id,
                m.c.author,
                m.c.created_at,
            )
            .where(m.c.channel == channel, m.c.user_id == user_id)
            .order_by(m.c.created_at, m.c.direction.desc(), m.c.id)
        ).mappings()
        document: dict[str, Any] = {
            "channel": channel,
            "subject": subject,
            "messages": [dict(row) for row in messages],
        }
        document["feedback"] = [
            dict(row)
            for row in connection.execute(
                select(f.c.message_id, f.c.helpful, f.c.comment, f.c.created_at)
                # on any reply of the channel: in a group, theirs on others' replies too (as erased)
                .where(
                    f.c.user_id == user_id,
                    f.c.message_id.in_(select(m.c.id).where(m.c.channel == channel)),
                )
                .order_by(f.c.created_at)
            ).mappings()
        ]
        document["handoffs"] = [
            dict(row)
            for row in connection.execute(
                select(h.c.id, h.c.conversation_id, h.c.status, h.c.opened_at, h.c.closed_at)
                .where(h.c.channel == channel, h.c.customer_user_id == user_id)
                .order_by(h.c.opened_at)
            ).mappings()
        ]
        document["outcomes"] = [
            dict(row)
            for row in connection.execute(
                select(o.c.message_id, o.c.name, o.c.created_at)
                .where(o.c.message_id.in_(theirs))
                .order_by(o.c.created_at)
            ).mappings()
        ]
        counts = {kind: len(document[kind]) for kind in ("messages", "feedback", "handoffs", "outcomes")}
        entry = store.audit.record_in(connection, actor, AuditAction.ACCESS, subject, {"counts": counts})
    document["not_included"] = list(NOT_INCLUDED)
    document["audit_id"] = entry.id
    document["at"] = entry.at
    return document
