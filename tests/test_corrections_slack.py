"""Proposals in the Slack ops channel: an operator corrects a message, Teller posts the stored messages
likely to share its need, the operator ticks some and confirms them (or confirms or rejects all), and
they are answered that way at once. Real slack-bolt with signed requests against the fake Slack."""

from __future__ import annotations

import json
from typing import Any

from bot.channels.slack import PROPOSAL_PICK, PROPOSALS_ALL, PROPOSALS_NONE, PROPOSALS_TICKED, REVIEW_CHOOSE
from bot.core import Incoming
from bot.storage import CorrectionAction
from tests import fake_slack as sl
from tests import test_operators_slack
from tests.servers import wait_for
from tests.test_corrections import CORRECTED, PARAPHRASES, UNRELATED, log
from tests.test_operators_slack import FORM, OPERATOR, OPS, Stack, element, press

#: The fixture: the fake Slack and Telegram and Teller serving, an ops channel and one operator.
stack = test_operators_slack.stack


def _press(
    ops: Stack, message: dict[str, Any], action_id: str, user: str = OPERATOR, ticked: tuple[str, ...] = ()
) -> None:
    block = next(
        b for b in message["blocks"] if any(e["action_id"] == action_id for e in b.get("elements", []))
    )
    pick = next(
        b for b in message["blocks"] if b.get("block_id", "").startswith("proposals:") and b is not block
    )
    options = element(message, PROPOSAL_PICK)["options"]
    state = {
        pick["block_id"]: {
            PROPOSAL_PICK: {
                "type": "checkboxes",
                "selected_options": [o for o in options if o["value"] in ticked],
            }
        }
    }
    shown = {**message, "ts": "20.0"}
    body = sl.interaction_body(
        element(message, action_id), shown, channel=OPS, user=user, state=state, block_id=block["block_id"]
    )
    ops.post(body, FORM)


def test_proposals_are_posted_and_confirmed_in_bulk_in_slack(stack: Stack) -> None:
    store, policy = stack.core.store, stack.core.policy
    ids = log(store, PARAPHRASES + UNRELATED, "card_arrival")
    read = policy.classifier.predict([CORRECTED])[0].intent
    label = next(x for x in policy.classifier.labels if x != read)

    # A customer asks; an operator flags the answer and chooses the right intent in the review post.
    stack.event(sl.dm(CORRECTED, "1700000001.000100", user="UCUSTOMER"))
    stack.slack.wait_for("chat.postMessage", 1)
    replies = wait_for(
        lambda: [m for m in store.conversations.history() if m.direction == "out" and m.platform_id]
    )
    channel, ts = (replies[0].platform_id or "").split(":")
    stack.event(sl.reaction_event("x", channel, ts, OPERATOR))
    item_post = stack.ops_posts(1)[-1]
    press(stack, item_post, {**element(item_post, REVIEW_CHOOSE), "selected_option": {"value": label}})

    # Teller proposes the stored messages likely to mean the same, in one post within Slack's limits.
    posted = wait_for(
        lambda: [m for m in stack.ops_posts(1) if m.get("text", "").startswith("Correction #")]
    )[-1]
    assert label in posted["text"]
    assert not sl.block_errors(posted["blocks"]) and len(posted["blocks"]) <= 50
    options = element(posted, PROPOSAL_PICK)["options"]
    shown = json.dumps(posted["blocks"])
    proposals = stack.service.ops.review.proposals()  # type: ignore[union-attr]
    assert [o["value"] for o in options] == [str(p.id) for p in proposals] and 0 < len(options) <= 10
    assert all(p.text[:40] in shown for p in proposals)
    wanted = [str(p.id) for p in proposals if p.text in PARAPHRASES]
    assert wanted, "the customers' paraphrases are proposed"

    # Not an operator: refused, only to them. Nothing ticked: said so.
    _press(stack, posted, PROPOSALS_ALL, user="UINTRUDER")
    assert "only operators can confirm proposals" in stack.ephemerals(1)[-1]["text"].lower()
    _press(stack, posted, PROPOSALS_TICKED)
    assert "tick the messages that mean the same first" in stack.ephemerals(2)[-1]["text"].lower()

    # The operator ticks the paraphrases and confirms them; the others are rejected.
    _press(stack, posted, PROPOSALS_TICKED, ticked=tuple(wanted))
    update = wait_for(lambda: [u for u in stack.slack.sent("chat.update") if "Confirmed" in json.dumps(u)])[
        -1
    ]
    note = json.dumps(update.get("blocks", ""))
    assert f"Confirmed {len(wanted)}, rejected {len(options) - len(wanted)} by <@{OPERATOR}>" in note
    assert PROPOSALS_ALL not in note  # the buttons are gone
    made = [c for c in store.feedback.corrections() if c.action == CorrectionAction.PROPOSAL]
    assert sorted(str(c.message_id) for c in made) == sorted(
        ids[p.text] for p in proposals if str(p.id) in wanted
    )
    assert all((c.author, c.label, c.origin_id is not None) == ("slack:UOPS", label, True) for c in made)

    # Answered that way at once.
    for text in (p.text for p in proposals if str(p.id) in wanted):
        answered = stack.service.handle(Incoming("web", "later", "later", None, text))
        assert answered.intent == label
        assert "proposed from #" in (store.conversations.message(answered.message_id).reason or "")
    # Pressing again (another operator, a stale post): nothing is decided twice.
    _press(stack, posted, PROPOSALS_NONE)
    again = wait_for(
        lambda: [u for u in stack.slack.sent("chat.update") if "decided already" in json.dumps(u)]
    )
    assert "decided already by someone else" in json.dumps(again[-1].get("blocks", ""))
