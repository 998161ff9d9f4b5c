"""Positioning interviews in Slack, end to end: signed slash commands, DMs and button presses into
Teller through the real slack-bolt, prompts and the brief going out to a fake Web API on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest

from bot.assistant import build_core
from bot.channels.slack import EVENTS_PATH, MULTI_PICK_ACTION, MULTI_SUBMIT_ACTION, SlackChannel
from bot.core import Incoming, TellerCore
from bot.positioning_desk import PositioningDesk
from bot.settings import get_settings
from bot.web.app import create_app
from tests import fake_slack as sl
from tests.servers import serve_in_thread
from tests.test_interview import ANSWERS

SECRET = "signing-secret"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
QUESTION_COUNT = len(ANSWERS)


class SlackPM:
    """One product manager driving Teller through signed Slack requests."""

    def __init__(self, fake: sl.FakeSlack, teller: str, user: str) -> None:
        self.fake, self.teller, self.user = fake, teller, user
        self.dm_channel = f"D{user}"
        self._ts = 1_700_000_000.0

    def post(self, body: str, content_type: str) -> httpx.Response:
        response = httpx.post(
            self.teller + EVENTS_PATH, content=body, headers=sl.signed(SECRET, body, content_type)
        )
        assert response.status_code == 200, response.text
        return response

    def command(self, text: str, in_dm: bool = False) -> str:
        """``/teller <text>``; returns what Slack shows the user right away (the ack text)."""
        channel = self.dm_channel if in_dm else "C1"
        body = sl.command_body(text, f"{self.teller}/unused", user=self.user, channel=channel)
        return self.post(body, FORM).text  # Bolt acks with the text as a plain-text body

    def say(self, text: str) -> None:
        self._ts += 1
        ts = f"{self._ts:.6f}"
        event = sl.dm(text, ts, user=self.user, channel=self.dm_channel)
        self.post(sl.event_body(f"Ev{self.user}{ts}", event), JSON)

    def press(self, message: dict[str, Any], label: str) -> None:
        button = next(
            e
            for b in message["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["type"] == "button" and e["text"]["text"] == label
        )
        action = {"action_id": button["action_id"], "value": button["value"], "text": button["text"]}
        self.post(sl.interaction_body(action, message, channel=self.dm_channel, user=self.user), FORM)

    def tick_and_submit(self, message: dict[str, Any], labels: list[str]) -> None:
        multi = next(b for b in message["blocks"] if b.get("block_id") == "teller_multi")
        boxes, submit = multi["elements"]
        ticked = [o for o in boxes["options"] if o["text"]["text"] in labels]
        assert len(ticked) == len(labels)
        state = {"teller_multi": {MULTI_PICK_ACTION: {"type": "checkboxes", "selected_options": ticked}}}
        action = {"action_id": MULTI_SUBMIT_ACTION, "value": submit["value"], "text": submit["text"]}
        body = sl.interaction_body(
            action, message, channel=self.dm_channel, user=self.user, state=state, block_id="teller_multi"
        )
        self.post(body, FORM)

    def messages(self) -> list[dict[str, Any]]:
        return [m for m in self.fake.sent() if m["channel"] == self.dm_channel]

    def next_message(self, seen: int, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for the DM's message number ``seen`` (0-based) and return it, as Slack would show it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages()
            if len(found) > seen:
                message = found[seen]
                return {**message, "ts": f"{1_800_000_000 + seen}.000000", "blocks": _blocks(message)}
            time.sleep(0.03)
        got = [m["text"][:60] for m in self.messages()]
        raise AssertionError(f"{self.user}: no message {seen}; got {got}")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    raw = message.get("blocks", [])
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def note(message: dict[str, Any]) -> str:
    return " ".join(e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"])


def answer(pm: SlackPM, prompt: dict[str, Any], question: str) -> None:
    """Answer ``question`` the way a PM would in Slack: buttons for choices and scales,
    checkboxes for multiple choice, a plain DM for text."""
    options = [b for b in prompt["blocks"] if b.get("block_id") == "teller_multi"]
    if options:
        labels = {o["value"]: o["text"]["text"] for o in options[0]["elements"][0]["options"]}
        picks = [v.strip() for v in ANSWERS[question].split(",")]
        pm.tick_and_submit(prompt, [labels.get(v, v) for v in picks])
        return
    buttons = {
        e["text"]["text"]
        for b in prompt["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "button"
    }
    value = ANSWERS[question]
    choice_labels = sorted(buttons - {"« Back", "Skip »"})
    if value in buttons:
        pm.press(prompt, value)
    elif value.isdigit() and choice_labels and not choice_labels[0].isdigit():
        pm.press(prompt, _option_label(prompt, int(value)))
    else:
        pm.say(value)


def _option_label(prompt: dict[str, Any], number: int) -> str:
    actions = next(b for b in prompt["blocks"] if b.get("block_id") == "teller_actions")
    options = [e for e in actions["elements"] if e["text"]["text"] not in ("« Back", "Skip »")]
    return str(options[number - 1]["text"]["text"])


def question_of(message: dict[str, Any], desk: PositioningDesk) -> str:
    """Which question a prompt asks, from its progress line (the interview's current question)."""
    interview = note(message).rsplit("interview ", 1)[1].strip()
    state = desk.service.store.get(interview)
    assert state.current is not None
    return state.current


@contextmanager
def running(home: Path, fake: sl.FakeSlack, api: str) -> Iterator[tuple[str, TellerCore, PositioningDesk]]:
    settings = get_settings()
    core = build_core(settings)
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    channel = SlackChannel(core, "xoxb-test", signing_secret=SECRET, api_url=f"{api}/api/", desk=desk)
    try:
        with serve_in_thread(create_app(core, [channel])) as teller:
            yield teller, core, desk
    finally:
        core.close()


#: The product managers of these tests (TELLER_PRODUCT_MANAGERS empty lets nobody interview in Slack).
PMS = "UPM1,UPM2,UPMA,UPMB,UPM9"


@pytest.fixture(autouse=True)
def product_managers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set before ``teller_env`` clears the settings cache (autouse fixtures come first)."""
    monkeypatch.setenv("TELLER_PRODUCT_MANAGERS", PMS)


@pytest.fixture()
def fake_api() -> Iterator[tuple[sl.FakeSlack, str]]:
    fake = sl.FakeSlack()
    with serve_in_thread(fake.app) as api:
        yield fake, api


def test_full_interview_in_slack_with_buttons_progress_and_the_brief(
    teller_env: Path, fake_api: tuple[sl.FakeSlack, str]
) -> None:
    fake, api = fake_api
    with running(teller_env, fake, api) as (teller, core, desk):
        # Some customer traffic for the brief's evidence, through Slack too.
        customer = SlackPM(fake, teller, "UCUSTOMER")
        customer.say("What's the overdraft fee?")
        customer.next_message(0)

        pm = SlackPM(fake, teller, "UPM1")
        assert pm.command("interview") == "I'll continue in a direct message."
        assert fake.sent("conversations.open")[-1]["users"] == "UPM1"
        first = pm.next_message(0)
        assert "Interview iv_" in first["text"] and "What is the product called" in first["text"]
        assert first.get("thread_ts") is None  # prompts are top-level messages in the DM
        assert note(first).startswith("Step 1 of 5: Market research and personas")

        seen, asked, steps = 1, [], set()
        prompt = first
        bad_answer_done = back_done = False
        while "Positioning = P(D|U) x M" not in prompt["text"]:
            question = question_of(prompt, desk)
            asked.append(question)
            steps.add(note(prompt).split(":")[0])
            if question == "target_accuracy" and not bad_answer_done:
                pm.say("about ninety")  # a bad answer: the same question again, with the reason
                prompt = pm.next_message(seen)
                seen += 1
                assert "Please answer with a number" in prompt["text"]
                assert question_of(prompt, desk) == "target_accuracy"
                bad_answer_done = True
            if question == "pretraining" and not back_done:
                pm.press(prompt, "« Back")  # back to the model family, then on again
                prompt = pm.next_message(seen)
                seen += 1
                assert question_of(prompt, desk) == "model_family"
                assert "Current answer: BERT-like encoder" in prompt["text"]
                answer(pm, prompt, "model_family")
                prompt = pm.next_message(seen)
                seen += 1
                assert question_of(prompt, desk) == "pretraining"
                back_done = True
            if question == "need_links":  # Teller's links for each need, confirmed with a button
                assert "Teller suggests:" in prompt["text"] and "1. track a card" in prompt["text"]
                pm.press(prompt, "Confirm Teller's suggestion")
            else:
                answer(pm, prompt, question)
            prompt = pm.next_message(seen)
            seen += 1

        assert bad_answer_done and back_done
        assert steps == {f"Step {n} of 5" for n in range(1, 6)}
        assert "needs met" in prompt["text"]
        # The brief and its chart were uploaded into the DM.
        [complete] = fake.wait_for("files.completeUploadExternal", 1)
        assert complete["channel_id"] == "DUPM1"
        brief = fake.files["brief.md"].decode()
        assert "Positioning = P(D|U) x M" in brief and "Messages: 1" in brief
        assert fake.files["evidence.png"].startswith(b"\x89PNG")

        [state] = desk.service.store.for_user("slack:UPM1")
        assert state.status == "completed"
        answers = desk.engine.answered(state)
        assert answers["pretraining"] == "Use a pretrained model as is"
        assert answers["target_accuracy"] == 94
        assert answers["constraints"] == ["CPU only", "Under 10 ms per message"]
        assert {"need_links", "resolution", "need_coverage", "market_match"} <= set(asked)
        assert [line.split(" |")[0] for line in answers["need_links"]] == [
            "track a card that hasn't arrived",
            "understand a fee",
            "investment advice",
        ]
        assert answers["market_match"] == "0.8 | the source article"
        # The PM's interview answers are not customer messages: only the customer's exchange is logged.
        assert core.store.conversations.count() == 2

        # Once it is finished, the PM's DMs are customer questions again; `/teller brief` posts it again.
        before = len(pm.messages())
        pm.say("What's the overdraft fee?")
        reply = pm.next_message(before)
        assert "overdraft" in reply["text"].lower() and reply.get("thread_ts")
        assert pm.command(f"brief {state.id}", in_dm=True) == ""
        fake.wait_for("files.completeUploadExternal", 2)
        # Both briefs are kept in the database, whichever replica wrote them.
        kept = core.store.interviews.briefs(state.id)
        assert len(kept) == 2 and "Positioning = P(D|U) x M" in kept[0].markdown
        assert "score" in kept[1].score and kept[0].user_id == state.user_id


def test_status_back_cancel_pause_and_stale_buttons(
    teller_env: Path, fake_api: tuple[sl.FakeSlack, str]
) -> None:
    fake, api = fake_api
    with running(teller_env, fake, api) as (teller, core, desk):
        pm = SlackPM(fake, teller, "UPM2")
        pm.command("interview")
        pm.next_message(0)
        pm.say(ANSWERS["product"])
        second = pm.next_message(1)
        assert question_of(second, desk) == "target_users"

        pm.command("interview status", in_dm=True)
        status = pm.next_message(2)
        assert "step 1 of 5, 1 answer" in status["text"] and "product: Teller" in status["text"]

        pm.command("interview back")
        again = pm.next_message(3)
        assert question_of(again, desk) == "product" and "Current answer: Teller" in again["text"]

        # Paused: DMs are customer questions; resumed: answers again.
        pm.command("interview pause")
        assert "Paused interview" in pm.next_message(4)["text"]
        pm.say("What's the overdraft fee?")
        assert "overdraft" in pm.next_message(5)["text"].lower()
        assert core.store.conversations.count() == 2
        pm.command("interview")
        resumed = pm.next_message(6)
        assert "Resuming interview" in resumed["text"] and question_of(resumed, desk) == "product"

        # A choice button from a prompt that is no longer current (pressed after going back).
        pm.say(ANSWERS["product"])
        pm.say(ANSWERS["target_users"])
        pm.say(ANSWERS["user_traits"])
        pm.next_message(9)
        state = desk.service.store.active_for("slack:UPM2")
        assert state is not None and state.current == "needs"
        stale = {
            "ts": "1.0",
            "text": "old",
            "blocks": [
                {
                    "type": "actions",
                    "block_id": "teller_actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "teller_choice_0",
                            "value": f"iv:{state.id}:model_family:1",
                            "text": {"type": "plain_text", "text": "BERT-like encoder"},
                        }
                    ],
                }
            ],
        }
        pm.press(stale, "BERT-like encoder")
        warned = pm.next_message(10)
        assert "belongs to an earlier question" in warned["text"]
        assert question_of(warned, desk) == "needs"

        pm.command("interview dance")
        assert "Unknown interview command" in pm.next_message(11)["text"]
        pm.command("interview cancel")  # asks first; the DM "yes" confirms
        assert "Type yes to cancel it" in pm.next_message(12)["text"]
        pm.say("yes")
        cancelled = pm.next_message(13)
        assert "was cancelled" in cancelled["text"]
        pm.say("What's the overdraft fee?")
        assert "overdraft" in pm.next_message(14)["text"].lower()
        pm.command("interview list")
        assert "cancelled" in pm.next_message(15)["text"]


def test_two_pms_at_once_and_resume_after_a_restart(
    teller_env: Path, fake_api: tuple[sl.FakeSlack, str]
) -> None:
    fake, api = fake_api
    order = list(ANSWERS)[:6]  # text and list questions, then the needs with importances
    with running(teller_env, fake, api) as (teller, _core, desk):
        pms = [SlackPM(fake, teller, "UPMA"), SlackPM(fake, teller, "UPMB")]
        for pm in pms:
            pm.command("interview")
            pm.next_message(0)

        def drive(pm: SlackPM, suffix: str) -> None:
            for i, question in enumerate(order[:5]):
                pm.say(f"{ANSWERS[question]} {suffix}" if question == "product" else ANSWERS[question])
                pm.next_message(i + 1)

        threads = [Thread(target=drive, args=(pm, pm.user)) for pm in pms]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for pm in pms:
            state = desk.service.store.active_for(f"slack:{pm.user}")
            assert state is not None and state.current == "competitors"
            assert state.answers["product"].endswith(pm.user)
            assert all(m["text"].count("Interview iv_") <= 1 for m in pm.messages())
        ids = {desk.service.store.active_for(f"slack:{pm.user}").id for pm in pms}  # type: ignore[union-attr]
        assert len(ids) == 2

    # A new process over the same data: the DM carries on where each PM was.
    with running(teller_env, fake, api) as (teller, _core, desk):
        pm = SlackPM(fake, teller, "UPMA")
        pm._ts += 1000  # Slack's message timestamps never repeat in a channel
        seen = len(pm.messages())
        pm.say(ANSWERS["competitors"])
        after = pm.next_message(seen)
        assert question_of(after, desk) == "competitor_coverage"
        assert [b for b in after["blocks"] if b["type"] == "actions"]  # the 1-5 scale as buttons
        pm.command("interview")
        assert "Resuming interview" in pm.next_message(seen + 1)["text"]


def test_product_manager_allowlist(
    teller_env: Path, fake_api: tuple[sl.FakeSlack, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELLER_PRODUCT_MANAGERS", "UPM1")
    get_settings.cache_clear()
    fake, api = fake_api
    with running(teller_env, fake, api) as (teller, _core, desk):
        outsider = SlackPM(fake, teller, "UCUSTOMER")
        refused = outsider.command("interview")
        assert "limited to product managers" in refused and "is empty" not in refused
        assert not fake.sent("conversations.open")
        # A forged interview button from someone else does not reach anyone's interview.
        reply = desk.converse(Incoming("slack", "DUCUSTOMER", "UCUSTOMER", None, "iv:iv_nope:back"))
        assert "limited to product managers" in reply.text
        other = desk.converse(Incoming("slack", "DUPM1", "UPM1", None, "iv:iv_nope:back"))
        assert "No interview 'iv_nope'" in other.text
        pm = SlackPM(fake, teller, "UPM1")
        assert pm.command("interview") == "I'll continue in a direct message."
        assert "What is the product called" in pm.next_message(0)["text"]


def test_an_answer_slack_delivers_again_is_not_applied_twice(
    teller_env: Path, fake_api: tuple[sl.FakeSlack, str]
) -> None:
    """Slack retries an event (to another replica, after a restart: a new event_id): the answer
    gets the reply it got, and the interview does not move on a second time."""
    fake, api = fake_api
    with running(teller_env, fake, api) as (teller, core, desk):
        pm = SlackPM(fake, teller, "UPM9")
        pm.command("interview")
        pm.next_message(0)
        pm.say(ANSWERS["product"])
        second = pm.next_message(1)
        assert question_of(second, desk) == "target_users"
        ts = f"{pm._ts:.6f}"
        event = sl.dm(ANSWERS["product"], ts, user=pm.user, channel=pm.dm_channel)
        pm.post(sl.event_body(f"EvRetry{ts}", event), JSON)  # the same message, another event id
        time.sleep(1.0)
        assert len(pm.messages()) == 2  # delivered the first time: not sent again
        [state] = [s for s in core.store.interviews.for_user(f"slack:{pm.user}")]
        assert list(state.answers) == ["product"] and state.current == "target_users"


# ------------------------------------------------------------------------- the quick interview

#: Teller's own figures as the desk passes them (see the desk tests below for the wiring).
FIGURES = {
    "model_version": "toy-model (tiny encoder)",
    "accuracy": 93.9,
    "latency_ms": 14.2,
    "containment": 61.5,
}


def test_quick_interview_in_slack_prefilled_with_pasted_lists_numbers_and_confirmed_cancel(
    teller_env: Path, fake_api: tuple[sl.FakeSlack, str]
) -> None:
    """The quick interview end to end in Slack, with the fixes of #16: "quick" switches to it,
    prefilled answers kept with "ok", a multi-line DM is one list answer, "1,250" is 1250, an
    answer starting with "Back" is an answer, cancel asks and "no" carries on; Teller's links for
    every need confirmed with a button after an unknown intent was refused."""
    fake, api = fake_api
    with running(teller_env, fake, api) as (teller, _core, desk):
        desk.service.defaults = lambda: dict(FIGURES)
        pm = SlackPM(fake, teller, "UPM1")
        pm.command("interview new")
        first = pm.next_message(0)
        assert "Type quick for the quick interview (12 questions" in first["text"]
        pm.say("quick")
        prompt = pm.next_message(1)
        assert "to the quick interview (12 questions, 0 answered)" in prompt["text"]
        seen, asked = 2, []
        said = {
            "product": "Back to basics banking: Teller, for Lumen Bank customers",
            "model_version": "ok",
            "target_accuracy": "skip",  # no target stated (the figure shown is information only)
            "target_latency_ms": "1,250",
            "target_containment": "60",
            "need_coverage": "1 | 2\n2 | 4\ninvestment advice | 1",  # every need rated (#16)
        }
        cancel_done = False
        while "Positioning = P(D|U) x M" not in prompt["text"]:
            question = question_of(prompt, desk)
            asked.append(question)
            if question == "model_version":
                assert "Prefilled from Teller: toy-model (tiny encoder)" in prompt["text"]
            if question == "target_accuracy":
                assert "For information, Teller measures: 93.9" in prompt["text"]
                assert "Prefilled" not in prompt["text"]
            if question == "gap" and not cancel_done:
                pm.command("interview cancel")
                assert "Type yes to cancel it" in pm.next_message(seen)["text"]
                pm.say("no")
                prompt = pm.next_message(seen + 1)
                seen += 2
                assert "Not cancelled" in prompt["text"] and question_of(prompt, desk) == "gap"
                cancel_done = True
            if question == "need_links":
                # Teller's links for every need in one question; an unknown intent is refused with
                # the closest ones and the question stays; then the button confirms the suggestion.
                assert "Teller suggests:" in prompt["text"] and "1. track a card" in prompt["text"]
                pm.say("1 | intent:card_arival\n3 | kb:no_such_entry")
                prompt = pm.next_message(seen)
                seen += 1
                assert (
                    "intent:card_arival is not one of the classifier's intents (closest: card_arrival"
                    in (prompt["text"])
                )
                assert "kb:no_such_entry is not one of the knowledge base's entries" in prompt["text"]
                assert question_of(prompt, desk) == "need_links" and "Teller suggests:" in prompt["text"]
                pm.press(prompt, "Confirm Teller's suggestion")
            elif question in said:
                pm.say(said[question])
            else:
                answer(pm, prompt, question)
            prompt = pm.next_message(seen)
            seen += 1

        assert asked == [
            "product",
            "target_users",
            "needs",
            "competitors",
            "gap",
            "need_links",
            "need_coverage",
            "model_version",
            "target_accuracy",
            "target_latency_ms",
            "success_metric",
            "target_containment",
        ]
        fake.wait_for("files.completeUploadExternal", 1)
        brief = fake.files["brief.md"].decode()
        assert "Positioning = P(D|U) x M" in brief and "Back to basics banking" in brief
        [state] = desk.service.store.for_user("slack:UPM1")
        answers = desk.engine.answered(state)
        assert state.status == "completed" and state.mode == "quick" and len(answers) == 11
        assert answers["product"] == said["product"]
        assert answers["needs"] == [
            "track a card that hasn't arrived | 5",
            "understand a fee | 4",
            "investment advice | 2",
        ]
        assert answers["model_version"] == FIGURES["model_version"] and "target_accuracy" not in answers
        assert answers["target_latency_ms"] == 1250 and answers["target_containment"] == 60
        assert [line.split(" |")[0] for line in answers["need_links"]] == [
            "track a card that hasn't arrived",
            "understand a fee",
            "investment advice",
        ]
        assert all("card_arival" not in line for line in answers["need_links"])

        # Options side by side (#16, item 4), by slash command, on the same customer traffic: one
        # Teller serves and one led by the advice it declines by design.
        for user, text in [
            ("C1", "What's the overdraft fee?"),
            ("C2", "What's the overdraft fee?"),
            ("C3", "Which shares should I buy to get rich?"),
            ("C4", "Should I invest my savings in stocks?"),
        ]:
            _core.handle(Incoming("web", user, user, None, text))
        before = len(pm.messages())
        assert (
            pm.command(
                f"brief {state.id} compare Service first: understand a fee | 5; track a card that hasn't "
                "arrived | 4 || Advice led: investment advice | 5; portfolio analysis | 4 | 2",
                in_dm=True,
            )
            == ""
        )
        reply = pm.next_message(before)
        assert "Options side by side" in reply["text"]
        lines = reply["text"].split("Options side by side")[1]
        assert "as interviewed" in lines and lines.index("Service first") < lines.index("Advice led")
        fake.wait_for("files.completeUploadExternal", 2)
        brief = fake.files["brief.md"].decode()
        assert "## Positioning options side by side" in brief and "## Executive summary" in brief
        assert "## Trend since the last runs" in brief and "(this brief)" in brief
        page = fake.files["brief.html"].decode()
        assert page.startswith("<!DOCTYPE html>") and "Positioning options side by side" in page
        refused = pm.command(f"brief {state.id} compare nothing here", in_dm=True)
        assert refused == ""
        assert "expected 'name: need | importance" in pm.next_message(before + 1)["text"]


# The desk's side of the quick interview: start words, "resume" in the DM, Teller's own figures.


def test_slash_command_starts_a_quick_interview(teller_env: Path) -> None:
    desk = PositioningDesk(get_settings())
    try:
        reply = desk.command("slack", "UPM1", "new quick")
        assert "(quick: 12 questions)" in reply.text
    finally:
        desk.close()


def test_a_paused_pm_can_type_resume_in_the_dm(teller_env: Path) -> None:
    desk = PositioningDesk(get_settings())
    try:
        desk.command("slack", "UPM1", "new")
        desk.command("slack", "UPM1", "pause")
        assert not desk.wants(Incoming("slack", "DUPM1", "UPM1", None, "What's the overdraft fee?"))
        assert desk.wants(Incoming("slack", "DUPM1", "UPM1", None, "resume"))
    finally:
        desk.close()


def test_the_desk_prefills_teller_s_own_figures(teller_env: Path) -> None:
    desk = PositioningDesk(get_settings())
    try:
        assert desk.service.defaults is not None
        assert "model_version" in desk.service.defaults()
    finally:
        desk.close()
