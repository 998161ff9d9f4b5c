"""Block Kit rendering: Teller's replies, handoff threads and review items as Slack messages.

Rendering only, no decisions. Every renderer keeps within Slack's documented limits by splitting,
never by cutting ("Block Kit reference": a section's text at most 3,000 characters, at most 50
blocks per message, button values at most 2,000 characters and texts 75, at most 25 elements per
actions block; "chat.postMessage": ``text`` at most 40,000 characters). A long reply becomes several
sections, and several messages when one cannot hold them all; its buttons go on the last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.channels.slack.text import escape
from bot.choices import choice_ref
from bot.core import Outgoing
from bot.delivery import split_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bot.knowledge import Overlap
    from bot.operators import Actor
    from bot.storage import Correction, Handoff, Proposal, ReviewItem, StoredMessage

#: Slack's limits (Block Kit reference; chat.postMessage).
SECTION_TEXT = 3000
MAX_BLOCKS = 50
MAX_TEXT = 40_000
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
ACTIONS_ELEMENTS = 25
OPTION_TEXT = 75
SELECT_OPTIONS = 100
#: Sections per message: 13 full sections are 39,000 characters, under ``text``'s 40,000.
SECTIONS_PER_MESSAGE = MAX_TEXT // SECTION_TEXT

CHOICE_ACTION = "teller_choice"
FEEDBACK_ACTION = "teller_feedback"
MULTI_PICK_ACTION = "teller_multi_pick"
MULTI_SUBMIT_ACTION = "teller_multi_submit"
REVIEW_CONFIRM, REVIEW_CHOOSE = "teller_review_confirm", "teller_review_choose"
REVIEW_WRONG, REVIEW_IGNORE = "teller_review_wrong", "teller_review_ignore"
WRONG_ANSWER_VIEW = "teller_wrong_answer"
HANDOFF_CLOSE = "teller_handoff_close"
#: Proposals to correct stored messages like a correction just made: tick some, then confirm the
#: ticked ones (the others are rejected), or confirm or reject them all.
PROPOSAL_PICK = "teller_proposals_pick"
PROPOSALS_TICKED, PROPOSALS_ALL, PROPOSALS_NONE = (
    "teller_proposals_ticked",
    "teller_proposals_all",
    "teller_proposals_none",
)
CHECKBOX_OPTIONS = 10


@dataclass(frozen=True)
class SlackPart:
    """One ``chat.postMessage``: the fallback ``text`` and its ``blocks`` (escaped already), or
    ``files`` to upload (``files_upload_v2``)."""

    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    files: tuple[Path, ...] = ()


def _escaped_length(text: str) -> int:
    return len(escape(text))


def sections(text: str, prefix: str = "", verbatim: bool = False) -> list[dict[str, Any]]:
    """``text`` (a person's or Teller's words) escaped, as ``mrkdwn`` sections of at most 3,000
    characters each, split at paragraph, line, sentence or word boundaries; ``prefix`` (Teller's own
    mrkdwn, not escaped) starts the first. ``verbatim``: Slack leaves the plain text as it is (no
    links made of URLs or channel names, and none of the "certain mentions" it otherwise parses in
    a ``mrkdwn`` text object, Block Kit's text object reference): for a customer's words in the ops
    channel, where a typed "@channel" must ping no one."""
    pieces = [p for p in split_text(text, SECTION_TEXT - len(prefix), _escaped_length) if p]
    out = []
    for i, piece in enumerate(pieces):
        shown: dict[str, Any] = {"type": "mrkdwn", "text": (prefix if i == 0 else "") + escape(piece)}
        if verbatim:
            shown["verbatim"] = True
        out.append({"type": "section", "text": shown})
    return out


def _context(text: str) -> dict[str, Any]:
    """A context block of one mrkdwn line (small print)."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _plain(text: str, limit: int) -> dict[str, str]:
    """A ``plain_text`` object; a label over Slack's limit ends in an ellipsis (labels are Teller's
    own short words, never a customer's message)."""
    text = text.strip() or "…"  # Slack refuses an empty text object (and so the whole message)
    return {"type": "plain_text", "text": text if len(text) <= limit else text[: limit - 1] + "…"}


def _buttons(reply: Outgoing) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = []
    options = [(index, c) for index, c in enumerate(reply.choices) if not c.is_feedback]
    for i, (index, choice) in enumerate(options):
        elements.append(
            {
                "type": "button",
                "action_id": f"{CHOICE_ACTION}_{i}",
                "value": choice.value
                if len(choice.value) <= BUTTON_VALUE
                else choice_ref(reply.message_id, index),
                "text": _plain(choice.label, BUTTON_TEXT),
            }
        )
    for choice in reply.choices:
        if choice.is_feedback:
            elements.append(
                {
                    "type": "button",
                    "action_id": f"{FEEDBACK_ACTION}_{'yes' if choice.helpful else 'no'}",
                    "value": reply.message_id,
                    "text": _plain(choice.label, BUTTON_TEXT),
                }
            )
    return elements


def reply_parts(reply: Outgoing) -> list[SlackPart]:
    """The reply as Slack messages: its text as sections (split, escaped), then its multi-select,
    buttons and note on the last message, then its files."""
    body = sections(reply.text) or [{"type": "section", "text": {"type": "mrkdwn", "text": " "}}]
    tail: list[dict[str, Any]] = []
    if reply.multi_select is not None:
        multi = reply.multi_select
        tail.append(
            {
                "type": "actions",
                "block_id": "teller_multi",
                "elements": [
                    {
                        "type": "checkboxes",
                        "action_id": MULTI_PICK_ACTION,
                        "options": [
                            {"text": _plain(o.label, OPTION_TEXT), "value": o.value}
                            for o in multi.options[:10]
                        ],
                    },
                    {
                        "type": "button",
                        "action_id": MULTI_SUBMIT_ACTION,
                        "style": "primary",
                        "value": multi.submit_prefix,
                        "text": _plain(multi.submit_label, BUTTON_TEXT),
                    },
                ],
            }
        )
    elements = _buttons(reply)
    for start in range(0, len(elements), ACTIONS_ELEMENTS):
        block_id = "teller_actions" if start == 0 else f"teller_actions_{start // ACTIONS_ELEMENTS}"
        tail.append(
            {"type": "actions", "block_id": block_id, "elements": elements[start : start + ACTIONS_ELEMENTS]}
        )
    if reply.note:
        for piece in split_text(reply.note, SECTION_TEXT):
            tail.append({"type": "context", "elements": [{"type": "mrkdwn", "text": piece}]})
    parts = _messages(body, tail)
    if reply.attachments:
        parts.append(SlackPart(files=reply.attachments))
    return parts


def _messages(body: list[dict[str, Any]], tail: list[dict[str, Any]]) -> list[SlackPart]:
    """Sections grouped into messages (≤ 13 sections, so ``text`` stays under 40,000 characters,
    and ≤ 50 blocks), ``tail`` on the last."""
    groups = [body[i : i + SECTIONS_PER_MESSAGE] for i in range(0, len(body), SECTIONS_PER_MESSAGE)] or [[]]
    if len(groups[-1]) + len(tail) > MAX_BLOCKS:
        groups.append([])
    groups[-1] = groups[-1] + tail
    return [SlackPart(text=_fallback(group), blocks=group) for group in groups]


def _fallback(blocks: list[dict[str, Any]]) -> str:
    """The notification text of a message: its sections' text (escaped already)."""
    text = "\n\n".join(b["text"]["text"] for b in blocks if b.get("type") == "section").strip()
    return text[:MAX_TEXT] or "Teller"


def handoff_blocks(handoff: Handoff, transcript: list[StoredMessage]) -> list[dict[str, Any]]:
    """The start of a handoff thread: who, the conversation so far (redacted), a Close button."""
    intro = (
        f"*Handoff* from a {handoff.channel} customer (`{handoff.id}`). Reply in this thread to talk to "
        "them; they see your replies on their own channel."
    )
    body: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": intro}}]
    said = [
        sections(m.text, f"*{'Customer' if m.direction == 'in' else 'Teller'}:* ", verbatim=True)
        for m in transcript
    ]
    # The thread's first message keeps the newest of the transcript, whole messages, when it is very
    # long: within Slack's blocks and its 40,000 characters (a reviewer's finding: twelve long
    # answers made a post of 47,640 characters in 27 blocks), the older ones named as not shown.
    kept: list[list[dict[str, Any]]] = []
    blocks, room = MAX_BLOCKS - 3, MAX_TEXT - len(intro) - 200  # (the note; the fallback's words)
    for parts in reversed(said):
        size = sum(len(b["text"]["text"]) for b in parts)
        if len(parts) > blocks or size > room:
            break
        kept.append(parts)
        blocks, room = blocks - len(parts), room - size
    left_out = len(said) - len(kept)
    if left_out:
        body.append(_context(f"_{left_out} earlier message(s) of the conversation are not shown here._"))
    body.extend(b for parts in reversed(kept) for b in parts)
    body.append(
        {
            "type": "actions",
            "block_id": f"handoff:{handoff.id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": HANDOFF_CLOSE,
                    "style": "danger",
                    "value": handoff.id,
                    "text": _plain("Close conversation", BUTTON_TEXT),
                }
            ],
        }
    )
    return body


def review_blocks(item: ReviewItem, labels: list[str]) -> list[dict[str, Any]]:
    """A review item: the question, why it is here, the suggestion, and the four actions."""
    s = item.suggestion
    suggested = (
        f"intent `{s.intent}`" if s and s.intent else f"KB entry `{s.kb_id}`" if s and s.kb_id else None
    )
    # The model in use now, which may read the text surer than the one that filed it ("low confidence").
    confidence = f" (model now {s.confidence:.2f})" if s and s.confidence is not None else ""
    head = (
        f"*Review #{item.id}* · {', '.join(sorted(set(item.reasons)))} · {len(item.message_ids)} message(s)"
    )
    out: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    out.extend(sections(item.text, verbatim=True))  # a customer's words: they ping no one
    out.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"Suggested: {suggested}{confidence}" if suggested else "No suggestion",
                }
            ],
        }
    )
    elements: list[dict[str, Any]] = []
    if suggested:
        elements.append(
            {
                "type": "button",
                "action_id": REVIEW_CONFIRM,
                "style": "primary",
                "value": str(item.id),
                "text": _plain(f"Confirm {suggested.split()[-1].strip('`')}", BUTTON_TEXT),
            }
        )
    if labels:
        elements.append(
            {
                "type": "static_select",
                "action_id": REVIEW_CHOOSE,
                "placeholder": _plain("Another intent", OPTION_TEXT),
                "options": [
                    {"text": _plain(label, OPTION_TEXT), "value": label}
                    for label in sorted(labels)[:SELECT_OPTIONS]
                ],
            }
        )
    for action_id, label in ((REVIEW_WRONG, "Answer is wrong"), (REVIEW_IGNORE, "Ignore")):
        elements.append(
            {
                "type": "button",
                "action_id": action_id,
                "value": str(item.id),
                "text": _plain(label, BUTTON_TEXT),
            }
        )
    out = out[: MAX_BLOCKS - 1]
    out.append({"type": "actions", "block_id": f"review:{item.id}", "elements": elements})
    return out


def proposal_blocks(correction: Correction, proposals: list[Proposal]) -> list[dict[str, Any]]:
    """Stored customer messages that may mean what ``correction`` says (at most ten: one checkbox
    each), each in full (escaped) with its score and how the model reads it now; checkboxes to tick
    some, and buttons to confirm the ticked ones (rejecting the rest), confirm all or reject all."""
    shown = proposals[:CHECKBOX_OPTIONS]
    what = f"`{correction.label}`" if correction.label else f"KB entry `{correction.kb_id}`"
    head = (
        f"*Correction #{correction.id}* ({what}, by {escape(correction.author)}): {len(shown)} other "
        "customer message(s) may mean the same and are answered otherwise now. Tick those that do, or "
        "confirm or reject them all; confirmed ones are answered that way at once."
    )
    out: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    for i, p in enumerate(shown, start=1):
        now = f", read now as `{p.model_intent}`" if p.model_intent else ""
        score = f"{p.score:.2f}" if p.score is not None else "?"
        out.extend(sections(p.text, f"*{i}.* _(score {score}{now})_ ", verbatim=True))
    ids = ",".join(str(p.id) for p in shown)
    pick = {
        "type": "checkboxes",
        "action_id": PROPOSAL_PICK,
        "options": [
            {"text": _plain(f"{i}. {p.text}", OPTION_TEXT), "value": str(p.id)}
            for i, p in enumerate(shown, start=1)
        ],
    }
    buttons = [
        {
            "type": "button",
            "action_id": PROPOSALS_TICKED,
            "style": "primary",
            "value": ids,
            "text": _plain("Confirm ticked", BUTTON_TEXT),
        },
        {
            "type": "button",
            "action_id": PROPOSALS_ALL,
            "value": ids,
            "text": _plain("Confirm all", BUTTON_TEXT),
        },
        {
            "type": "button",
            "action_id": PROPOSALS_NONE,
            "style": "danger",
            "value": ids,
            "text": _plain("Reject all", BUTTON_TEXT),
        },
    ]
    out = out[: MAX_BLOCKS - 2]
    out.append({"type": "actions", "block_id": f"proposals:{correction.id}", "elements": [pick]})
    out.append({"type": "actions", "block_id": f"proposals:{correction.id}:decide", "elements": buttons})
    return out


def ticked_proposals(body: dict[str, Any]) -> list[int]:
    """Ids of the proposals ticked in the message whose button was pressed."""
    values = body.get("state", {}).get("values", {})
    picked: list[int] = []
    for block in values.values():
        for option in (block.get(PROPOSAL_PICK) or {}).get("selected_options") or []:
            try:
                picked.append(int(option.get("value", "")))
            except (TypeError, ValueError):
                continue
    return picked


def wrong_answer_view(item: ReviewItem, channel: str, ts: str) -> dict[str, Any]:
    """The modal that takes a corrected answer for a review item."""
    return {
        "type": "modal",
        "callback_id": WRONG_ANSWER_VIEW,
        "private_metadata": json.dumps({"item": item.id, "channel": channel, "ts": ts}),
        "title": _plain(f"Correct review #{item.id}", 24),
        "submit": _plain("Save answer", 24),
        "close": _plain("Cancel", 24),
        "blocks": [
            *sections(item.text, verbatim=True)[: MAX_BLOCKS - 1],
            {
                "type": "input",
                "block_id": "answer",
                "label": _plain("The right answer (becomes a knowledge-base entry)", 2000),
                "element": {"type": "plain_text_input", "action_id": "answer", "multiline": True},
            },
        ],
    }


def settled_note(item: ReviewItem, actor: Actor) -> str:
    what = f": {escape(item.resolution)}" if item.resolution else ""
    return f"{item.status.capitalize()} by <@{actor.user_id}>{what}"


#: How many overlaps of an operator's corrected answer the settled review post names.
OVERLAPS_SHOWN = 3


def overlaps_note(overlaps: Sequence[Overlap]) -> str:
    """The overlaps of an operator's corrected answer (only reported, see
    :meth:`bot.review.ReviewService.wrong_answer`), one line each, with the command that would make
    the new entry the only answer of a topic; "" for none."""
    from bot.knowledge import correction_suggestion

    lines = []
    for overlap in overlaps[:OVERLAPS_SHOWN]:
        lines.append(f"• {escape(overlap.describe())}: {escape(correction_suggestion(overlap))}")
    more = len(overlaps) - OVERLAPS_SHOWN
    return "\n".join(lines + ([f"… and {more} more"] if more > 0 else []))


def ticked(body: dict[str, Any]) -> list[str]:
    """Values of the checkboxes ticked in the message whose button was pressed."""
    values = body.get("state", {}).get("values", {})
    picked = values.get("teller_multi", {}).get(MULTI_PICK_ACTION, {}).get("selected_options") or []
    return [str(option.get("value", "")) for option in picked]


def settled(message: dict[str, Any], note: str) -> list[dict[str, Any]]:
    """A posted message's blocks with its buttons replaced by ``note`` (a choice made, an item
    settled)."""
    kept = [b for b in message.get("blocks", []) if b.get("type") != "actions"][: MAX_BLOCKS - 1]
    kept.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note[:SECTION_TEXT]}]})
    return kept
