"""Operators in the terminal: ``teller review`` (the review queue) and ``teller flag``.

The terminal is always an operator (see :mod:`bot.operators`); actions are recorded as
``cli:<login name>``.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.app import JsonOpt, app, emit_json, out
from bot.errors import InputError
from bot.knowledge import NotApplied, correction_suggestion
from bot.operators import CLI, Actor, Operators
from bot.policy import AnswerPolicy
from bot.review import NOTHING_TO_REVIEW, Resolution, ReviewService
from bot.settings import get_settings
from bot.storage import (
    Correction,
    Decided,
    Flag,
    Proposal,
    ProposalStatus,
    ReviewItem,
    ReviewStatus,
    Suggestion,
)

review_app = typer.Typer(
    help="The review queue: list open items (the default), then confirm, choose, wrong or ignore; "
    "proposals to correct like a correction just made: proposals, accept, reject.",
    invoke_without_command=True,
)
app.add_typer(review_app, name="review")

ItemArg = Annotated[int, typer.Argument(metavar="ITEM", help="Item number from `teller review`.")]

REASON_LABELS = {
    "not_helpful": "not helpful",
    "flagged": "flagged",
    "handoff": "handoff",
    "clarify": "clarify",
    "low_confidence": "low confidence",
}


def local_actor() -> Actor:
    """Whoever runs the command, as ``cli:<login>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        user = "local"
    return Actor(CLI, user)


@contextmanager
def review_service() -> Iterator[ReviewService]:
    """A review service over the configured store; the policy is built only if an action needs it."""
    from bot.assistant import build_policy, open_store

    settings = get_settings()
    store = open_store(settings)
    policy: list[AnswerPolicy] = []

    def current_policy() -> AnswerPolicy:
        if not policy:
            policy.append(build_policy(settings))
        return policy[0]

    try:
        yield ReviewService(
            store,
            current_policy,
            None,
            Operators.from_settings(settings),
            review_confidence=settings.review_confidence,
        )
    finally:
        store.close()


# ---------------------------------------------------------------------------------------- review


@review_app.callback()
def review(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Settled items too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """File new answers to review, then list the open items (with --all, settled ones too)."""
    if ctx.invoked_subcommand is None:
        _list(show_all, as_json)


@review_app.command("list")
def review_list(
    show_all: Annotated[bool, typer.Option("--all", help="Settled items too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """File new answers to review, then list the open items (with --all, settled ones too)."""
    _list(show_all, as_json)


def _list(show_all: bool, as_json: bool) -> None:
    with review_service() as service:
        service.refresh()
        items = service.items(None if show_all else ReviewStatus.OPEN)
        waiting = service.store.proposals.open_count()
    if as_json:
        for item in items:
            emit_json(item_record(item))
        return
    if not items:
        out.print("The review queue is empty.")
        _waiting(waiting)
        return
    table = Table("#", "n", "reasons", "text", "suggestion", title=f"{len(items)} review items")
    if show_all:
        table.add_column("status")
    for item in items:
        text = escape(item.text[:80]) + "".join(f"\n[dim]“{escape(n[:70])}”[/dim]" for n in item.notes[:3])
        row = [str(item.id), str(item.count), reasons(item), text, suggestion_text(item.suggestion)]
        if show_all:
            row.append(f"{item.status} {item.resolution or ''}".strip())
        table.add_row(*row)
    out.print(table)
    out.print(
        '[dim]teller review confirm ITEM | choose ITEM INTENT | wrong ITEM "answer" | ignore ITEM[/dim]'
    )
    _waiting(waiting)


def _waiting(proposals: int) -> None:
    if proposals:
        out.print(
            f"{proposals} proposal(s) to correct like an earlier correction: `teller review proposals`."
        )


@review_app.command("confirm")
def review_confirm(item: ItemArg, as_json: JsonOpt = False) -> None:
    """The suggestion is right: record it as the item's label (then see the proposals it makes)."""
    with review_service() as service:
        resolution = service.confirm(item, local_actor())
        _report(resolution, as_json, _proposed(service, resolution))


@review_app.command("choose")
def review_choose(
    item: ItemArg,
    intent: Annotated[
        str,
        typer.Argument(
            metavar="INTENT|ENTRY", help="One of the model's intents, or a knowledge-base entry's id."
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """The item is about INTENT: record that label (then see the proposals it makes); or it is
    answered by the knowledge-base entry ENTRY (`teller kb list`), which answers it from now on."""
    with review_service() as service:
        resolution = service.choose(item, intent, local_actor())
        _report(resolution, as_json, _proposed(service, resolution))


@review_app.command("wrong")
def review_wrong(
    item: ItemArg,
    answer: Annotated[str, typer.Argument(help="The right answer, as customers should see it.")],
    as_json: JsonOpt = False,
) -> None:
    """Teller's answer was wrong: ANSWER becomes a knowledge-base entry, searchable at once.

    The entry answers the item's questions from now on, with no retraining. As after `teller kb add`,
    the answer policy is re-fitted for it and, with replication on (PostgreSQL), it is published to
    the change log now: every running server follows it within seconds.
    """
    from bot.cli.knowledge import refit_after_change

    with review_service() as service:
        _report(service.wrong_answer(item, answer, local_actor()), as_json)
        refit_after_change(get_settings(), service.kb, service.policy_provider())


@review_app.command("ignore")
def review_ignore(item: ItemArg, as_json: JsonOpt = False) -> None:
    """Nothing to learn from this item."""
    with review_service() as service:
        _report(service.ignore(item, local_actor()), as_json)


def _proposed(service: ReviewService, resolution: Resolution) -> list[Proposal]:
    """The proposals a correction to an intent makes (stored customer messages sharing its need)."""
    correction = resolution.correction
    if correction is None or not correction.label:
        return []
    return service.propose(correction.id)


def _report(resolution: Resolution, as_json: bool, proposals: list[Proposal] | None = None) -> None:
    item, correction = resolution.item, resolution.correction
    if as_json:
        emit_json(
            {
                "item": item_record(item),
                "correction": correction_record(correction) if correction else None,
                "superseded": list(resolution.superseded),
                "kb_id": resolution.kb_entry.id if resolution.kb_entry else None,
                "overlaps": [o.to_dict() for o in resolution.overlaps],
                "proposals": [proposal_record(p) for p in proposals or []],
                **({"not_applied": resolution.not_applied} if resolution.not_applied else {}),
            }
        )
        return
    message = f"Item {item.id} {item.status}"
    if item.resolution:
        message += f" ({item.resolution})"
    if resolution.kb_entry is not None:
        message += f"; knowledge-base entry {resolution.kb_entry.id!r} added and indexed"
    if correction is not None:
        message += f"; correction #{correction.id} recorded"
    if resolution.superseded:
        message += f", superseding #{', #'.join(str(i) for i in resolution.superseded)}"
    out.print(message + ".", highlight=False)
    if (unanswered := resolution.not_applied) is not None:
        out.print(f"warning: {unanswered}", highlight=False, soft_wrap=True)
    for overlap in resolution.overlaps:
        out.print(
            f"{escape(overlap.describe())}\n    {escape(overlap.detail)}\n"
            f"    -> {escape(correction_suggestion(overlap))}",
            highlight=False,
            soft_wrap=True,
        )
    if proposals:
        out.print(
            f"{len(proposals)} other stored message(s) may mean the same and are answered otherwise now:",
            highlight=False,
        )
        _print_proposals(proposals)


# ---------------------------------------------------------------------------------------- proposals

IdsArg = Annotated[
    list[int] | None,
    typer.Argument(metavar="PROPOSAL", help="Proposal numbers from `teller review proposals`."),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every open proposal (of --correction, if given).")]
OfOpt = Annotated[int | None, typer.Option("--correction", help="Only the proposals of this correction.")]


@review_app.command("proposals")
def review_proposals(
    correction: OfOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="Decided proposals too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stored customer messages Teller proposes to correct like an earlier correction (open ones)."""
    with review_service() as service:
        found = service.proposals(correction, None if show_all else ProposalStatus.OPEN)
    if as_json:
        for p in found:
            emit_json(proposal_record(p))
        return
    if not found:
        out.print("No proposals open." if not show_all else "No proposals.")
        return
    _print_proposals(found, show_status=show_all)


@review_app.command("accept")
def review_accept(
    ids: IdsArg = None,
    every: AllOpt = False,
    correction: OfOpt = None,
    reject_rest: Annotated[
        bool, typer.Option("--reject-rest", help="Reject the other open proposals of the same corrections.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Confirm proposals (one by one, or --all): each becomes a correction, answered that way at once."""
    with review_service() as service:
        confirm = _chosen(service, ids, every, correction)
        reject: list[int] = []
        if reject_rest:
            groups = {p.correction_id for p in service.proposals(None, None) if p.id in set(confirm)}
            reject = [p.id for g in sorted(groups) for p in service.proposals(g) if p.id not in set(confirm)]
        _decided(service.decide_proposals(confirm, reject, local_actor()), as_json)


@review_app.command("reject")
def review_reject(
    ids: IdsArg = None, every: AllOpt = False, correction: OfOpt = None, as_json: JsonOpt = False
) -> None:
    """Reject proposals (one by one, or --all): they are not proposed for that intent again."""
    with review_service() as service:
        _decided(
            service.decide_proposals([], _chosen(service, ids, every, correction), local_actor()), as_json
        )


def _chosen(service: ReviewService, ids: list[int] | None, every: bool, correction: int | None) -> list[int]:
    if every:
        if ids:
            raise InputError("give proposal numbers or --all, not both")
        chosen = [p.id for p in service.proposals(correction)]
        if not chosen:
            raise InputError(
                "no proposals are open" + (f" for correction #{correction}" if correction else "")
            )
        return chosen
    if not ids:
        raise InputError("give proposal numbers (see `teller review proposals`) or --all")
    return list(dict.fromkeys(ids))


def _decided(decided: Decided, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "confirmed": [
                    {"proposal": proposal_record(p), "correction": correction_record(c)}
                    for p, c in decided.confirmed
                ],
                "rejected": [proposal_record(p) for p in decided.rejected],
                "skipped": [proposal_record(p) for p in decided.skipped],
            }
        )
        return
    made = ", ".join(f"#{c.id}" for _, c in decided.confirmed)
    message = f"Confirmed {len(decided.confirmed)}" + (f" (corrections {made})" if made else "")
    message += f", rejected {len(decided.rejected)}"
    message += decided.skipped_note()
    out.print(message + ".", highlight=False)


def _print_proposals(proposals: list[Proposal], show_status: bool = False) -> None:
    table = Table(
        "#", "correction", "intent", "score", "text", "read now as", title=f"{len(proposals)} proposals"
    )
    if show_status:
        table.add_column("status")
    for p in proposals:
        row = [
            str(p.id),
            f"#{p.correction_id}",
            p.label or f"KB {p.kb_id}",
            f"{p.score:.2f}" if p.score is not None else "",
            escape(p.text[:80]),
            p.model_intent or "",
        ]
        if show_status:
            row.append(f"{p.status} {p.decided_by or ''}".strip())
        table.add_row(*row)
    out.print(table)
    out.print(
        "[dim]teller review accept N... [--reject-rest] | accept --all | reject N... | reject --all[/dim]"
    )


# ---------------------------------------------------------------------------------------- flag


@app.command()
def flag(
    message_id: Annotated[str, typer.Argument(help="Teller's reply, or the customer message it answers.")],
    reason: Annotated[str | None, typer.Option(help="What is wrong with the answer.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Flag one of Teller's answers as wrong; it goes to the review queue at once."""
    with review_service() as service:
        result = service.flag(message_id, reason, local_actor(), source="cli")
    item = result.item
    if as_json:
        emit_json({"flag": flag_record(result.flag), "item": item_record(item) if item is not None else None})
        return
    if item is None:
        out.print(f"Flagged {result.flag.message_id}, but {NOTHING_TO_REVIEW}.", highlight=False)
        return
    out.print(
        f"Flagged {result.flag.message_id}; review item {item.id} "
        f"({item.count} message{'s' if item.count != 1 else ''}).",
        highlight=False,
    )


# ---------------------------------------------------------------------------------------- shared


def reasons(item: ReviewItem) -> str:
    return ", ".join(REASON_LABELS.get(r, r) for r in item.reasons)


def suggestion_text(s: Suggestion | None) -> str:
    if s is None:
        return ""
    # The model in use now, which may read the text surer than the one that filed it ("low confidence").
    confidence = f" (model now {s.confidence:.2f})" if s.confidence is not None else ""
    return f"KB {s.kb_id}{confidence}" if s.kind == "kb" else f"intent {s.intent}{confidence}"


def item_record(item: ReviewItem) -> dict[str, Any]:
    s = item.suggestion
    return {
        "id": item.id,
        "status": item.status,
        "count": item.count,
        "reasons": list(item.reasons),
        "text": item.text,
        "texts": list(item.texts),
        "notes": list(item.notes),
        "route": item.route,
        "suggestion": (
            {"kind": s.kind, "intent": s.intent, "kb_id": s.kb_id, "confidence": s.confidence}
            if s is not None
            else None
        ),
        "message_ids": list(item.message_ids),
        "resolution": item.resolution,
        "resolved_by": item.resolved_by,
        "resolved_at": item.resolved_at,
        "created_at": item.created_at,
    }


def proposal_record(p: Proposal) -> dict[str, Any]:
    return {"kind": "proposal", **asdict(p)}


def flag_record(f: Flag) -> dict[str, Any]:
    return {"kind": "flag", **asdict(f)}


def correction_record(c: Correction, not_applied: dict[int, NotApplied] | None = None) -> dict[str, Any]:
    """``not_applied``: why corrections in force cannot be answered now, by id
    (:func:`bot.knowledge.unanswerable_corrections`)."""
    return {
        "kind": "correction",
        "id": c.id,
        "item_id": c.item_id,
        "text": c.text,
        "action": c.action,
        "label": c.label,
        "kb_id": c.kb_id,
        "author": c.author,
        "created_at": c.created_at,
        "superseded": c.superseded,
        "superseded_by": c.superseded_by,
        "superseded_at": c.superseded_at,
        "origin_id": c.origin_id,
        "message_id": c.message_id,
        **({"not_applied": not_applied[c.id].reason} if not_applied and c.id in not_applied else {}),
    }


def print_flags_and_corrections(
    flags: list[Flag], corrections: list[Correction], not_applied: dict[int, NotApplied] | None = None
) -> None:
    """The operators' part of ``teller feedback list``: flags, then corrections with supersession
    (``not_applied``: why corrections in force cannot be answered now, by id)."""
    not_applied = not_applied or {}
    if flags:
        table = Table("time", "who", "reply", "reason", "via", title=f"{len(flags)} flags")
        for f in flags:
            table.add_row(f.created_at[:19], escape(f.actor), f.message_id, escape(f.reason or ""), f.source)
        out.print(table)
    if corrections:
        table = Table("#", "time", "who", "text", "label", title=f"{len(corrections)} corrections")
        table.add_column("status", no_wrap=True)  # short: the reasons in full are in --json
        for c in corrections:
            label = c.label or ""
            if c.kb_id and c.action == "answer":
                label = f"new KB entry {c.kb_id}"
            elif c.kb_id and not c.label:
                label = f"KB {c.kb_id}"
            if c.superseded:
                status = f"superseded by #{c.superseded_by}"
            elif c.id in not_applied:
                status = f"not applied ({not_applied[c.id].kind})"
            else:
                status = "in force"
            if c.origin_id is not None:
                status += f" (proposed from #{c.origin_id})"
            table.add_row(str(c.id), c.created_at[:19], escape(c.author), escape(c.text[:60]), label, status)
        out.print(table)
