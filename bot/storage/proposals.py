"""Proposals: stored customer messages Teller suggests correcting like one an operator just corrected.

Which messages are proposed is :mod:`bot.corrections`' business; this repository reads the log it
chooses from, keeps the proposals, and settles them. Confirming a proposal stores a correction with
its provenance (who, when, ``origin_id``: the correction it was proposed from, ``message_id``: the
stored message) and settles any open review item for the same text, in one transaction; two
operators deciding the same proposal on two replicas get one decision (the second is skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from bot.storage import schema
from bot.storage.database import Database
from bot.storage.feedback import FeedbackRepository
from bot.storage.records import (
    Correction,
    CorrectionAction,
    NewCorrection,
    NewProposal,
    Proposal,
    ProposalStatus,
    ReviewStatus,
)
from bot.storage.review import insert_correction

_p = schema.correction_proposals
_k = schema.corrections
_r = schema.review_items
_m = schema.messages


@dataclass(frozen=True)
class LoggedMessage:
    """A customer's message in the log and how Teller answered it."""

    message_id: str
    text: str
    route: str | None
    intent: str | None
    created_at: str


@dataclass(frozen=True)
class Decided:
    """What deciding proposals did: confirmed ones with the correction each made, rejected ones, and
    those left undecided: another operator had decided them already, or their correction was
    superseded (status withdrawn)."""

    confirmed: tuple[tuple[Proposal, Correction], ...] = ()
    rejected: tuple[Proposal, ...] = ()
    skipped: tuple[Proposal, ...] = ()

    def skipped_note(self, others: str = "") -> str:
        """ "; 2 withdrawn (their correction was superseded); 1 decided already" (each part only where
        it counts any), for the operator's confirmation; ``others`` goes after "decided already"."""
        withdrawn = sum(p.status is ProposalStatus.WITHDRAWN for p in self.skipped)
        note = f"; {withdrawn} withdrawn (their correction was superseded)" if withdrawn else ""
        if len(self.skipped) > withdrawn:
            note += f"; {len(self.skipped) - withdrawn} decided already{others}"
        return note


class ProposalRepository:
    """Proposals and the log they are drawn from. Thread-safe."""

    def __init__(self, database: Database, feedback: FeedbackRepository) -> None:
        self.db = database
        self.feedback = feedback

    def log_messages(self, limit: int) -> list[LoggedMessage]:
        """The newest ``limit`` customer messages Teller answered (not relays in a handoff), newest
        first, each with its reply's route and intent."""
        o = _m.alias("o")
        query = (
            select(_m.c.id, _m.c.text, o.c.route, o.c.intent, _m.c.created_at)
            .join(o, o.c.reply_to == _m.c.id)
            .where(_m.c.direction == "in", o.c.direction == "out", o.c.route != "human")
            .order_by(_m.c.created_at.desc(), _m.c.id.desc())
            .limit(limit)
        )
        return [
            LoggedMessage(r["id"], r["text"], r["route"], r["intent"], r["created_at"])
            for r in self.db.rows(query)
        ]

    def reviewed_keys(self, label: str | None) -> set[str]:
        """Keys of texts an operator has looked at already: corrected (in force or not), filed in a
        settled review item, proposed and still open, or rejected as meaning ``label``."""
        with self.db.reading() as connection:
            keys = set(connection.execute(select(_k.c.key)).scalars())
            keys.update(
                connection.execute(select(_r.c.key).where(_r.c.status != ReviewStatus.OPEN.value)).scalars()
            )
            keys.update(
                connection.execute(
                    select(_p.c.key).where(
                        (_p.c.status == ProposalStatus.OPEN.value)
                        | ((_p.c.status == ProposalStatus.REJECTED.value) & (_p.c.label == label))
                    )
                ).scalars()
            )
        return {str(k) for k in keys if k is not None}

    def add(self, proposals: Sequence[NewProposal]) -> list[Proposal]:
        """Store proposals (one per correction and text: a repeat is ignored); returns those of the
        corrections concerned that are open, best first."""
        if not proposals:
            return []
        now = self.db.clock.now()
        with self.db.transaction() as connection:
            for p in proposals:
                connection.execute(
                    self.db.insert(_p)
                    .values(
                        correction_id=p.correction_id,
                        message_id=p.message_id,
                        text=p.text,
                        key=p.key,
                        label=p.label,
                        kb_id=p.kb_id,
                        score=p.score,
                        base_similarity=p.base_similarity,
                        model_similarity=p.model_similarity,
                        model_intent=p.model_intent,
                        status=ProposalStatus.OPEN.value,
                        created_at=now,
                    )
                    .on_conflict_do_nothing()
                )
        corrections = sorted({p.correction_id for p in proposals})
        return [p for c in corrections for p in self.list(ProposalStatus.OPEN, correction_id=c)]

    def list(
        self,
        status: ProposalStatus | None = ProposalStatus.OPEN,
        correction_id: int | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[Proposal]:
        """Proposals (only ``status`` ones; None for all), by correction, best first."""
        query = select(_p).order_by(_p.c.correction_id, _p.c.score.desc(), _p.c.id)
        if status is not None:
            query = query.where(_p.c.status == ProposalStatus(status).value)
        if correction_id is not None:
            query = query.where(_p.c.correction_id == correction_id)
        if ids is not None:
            query = query.where(_p.c.id.in_(list(ids)))
        return [_proposal(r) for r in self.db.rows(query)]

    def open_count(self) -> int:
        query = (
            select(func.count().label("n")).select_from(_p).where(_p.c.status == ProposalStatus.OPEN.value)
        )
        return int(self.db.rows(query)[0]["n"])

    def decide(
        self,
        confirm: Sequence[int],
        reject: Sequence[int],
        actor: str,
        same_text: Callable[[str, str], bool],
    ) -> Decided:
        """Confirm (each becomes a correction of its text with the proposal's intent or entry, by
        ``actor``, from the proposal's correction; open review items for the same text are settled
        with it) and reject proposals, in one transaction. Proposals decided already are skipped, and
        so are those whose correction was superseded (withdrawn, if they were still open)."""
        now = self.db.clock.now()
        wanted = list(dict.fromkeys([*confirm, *reject]))
        before = {p.id: p for p in self.list(None, ids=wanted)} if wanted else {}
        confirmed: list[tuple[int, int]] = []
        rejected: list[int] = []
        skipped: list[int] = []
        with self.db.transaction() as connection:
            # Proposals of a correction superseded since (or before this rule, in an older store)
            # are withdrawn, not decided.
            origins = {p.correction_id for p in before.values()}
            gone = set(
                connection.execute(
                    select(_k.c.id).where(_k.c.id.in_(origins), _k.c.superseded_by.is_not(None))
                ).scalars()
            )
            for proposal_id in wanted:
                proposal = before.get(proposal_id)
                if proposal is None:
                    continue
                accept = proposal_id in confirm
                status = ProposalStatus.CONFIRMED if accept else ProposalStatus.REJECTED
                if proposal.correction_id in gone:
                    status, accept = ProposalStatus.WITHDRAWN, False
                settled = connection.execute(
                    _p.update()
                    .where(_p.c.id == proposal_id, _p.c.status == ProposalStatus.OPEN.value)
                    .values(status=status.value, decided_by=actor, decided_at=now)
                )
                if settled.rowcount != 1 or status is ProposalStatus.WITHDRAWN:
                    skipped.append(proposal_id)
                    continue
                if not accept:
                    rejected.append(proposal_id)
                    continue
                correction = NewCorrection(
                    proposal.text,
                    proposal.key,
                    CorrectionAction.PROPOSAL,
                    label=proposal.label,
                    kb_id=proposal.kb_id,
                    origin_id=proposal.correction_id,
                    message_id=proposal.message_id,
                )
                correction_id, _ = insert_correction(
                    self.db, connection, None, correction, actor, now, same_text
                )
                connection.execute(_p.update().where(_p.c.id == proposal_id).values(result_id=correction_id))
                connection.execute(
                    _r.update()
                    .where(_r.c.key == proposal.key, _r.c.status == ReviewStatus.OPEN.value)
                    .values(
                        status=ReviewStatus.CHOSEN.value,
                        resolution=proposal.label or proposal.kb_id,
                        resolved_by=actor,
                        resolved_at=now,
                        updated_at=now,
                    )
                )
                confirmed.append((proposal_id, correction_id))
        after = {p.id: p for p in self.list(None, ids=wanted)} if wanted else {}
        made = {c: self.feedback.corrections(correction_id=c)[0] for _, c in confirmed}
        return Decided(
            tuple((after[p], made[c]) for p, c in confirmed),
            tuple(after[p] for p in rejected),
            tuple(after[p] for p in skipped),
        )


def _proposal(row: dict[str, Any]) -> Proposal:
    return Proposal(**{**row, "status": ProposalStatus(row["status"])})
