"""Slack, through slack-bolt: see :mod:`bot.channels.slack.channel` for how the parts fit."""

from bot.channels.slack.blocks import (
    CHOICE_ACTION,
    FEEDBACK_ACTION,
    HANDOFF_CLOSE,
    MULTI_PICK_ACTION,
    MULTI_SUBMIT_ACTION,
    PROPOSAL_PICK,
    PROPOSALS_ALL,
    PROPOSALS_NONE,
    PROPOSALS_TICKED,
    REVIEW_CHOOSE,
    REVIEW_CONFIRM,
    REVIEW_IGNORE,
    REVIEW_WRONG,
    WRONG_ANSWER_VIEW,
    reply_parts,
)
from bot.channels.slack.channel import EVENTS_PATH, SlackChannel
from bot.channels.slack.commands import HELP, help_text
from bot.channels.slack.middleware import written_by_a_person
from bot.channels.slack.transport import CHANNEL, SlackTransport

__all__ = [
    "CHANNEL",
    "CHOICE_ACTION",
    "EVENTS_PATH",
    "FEEDBACK_ACTION",
    "HANDOFF_CLOSE",
    "HELP",
    "MULTI_PICK_ACTION",
    "MULTI_SUBMIT_ACTION",
    "PROPOSALS_ALL",
    "PROPOSALS_NONE",
    "PROPOSALS_TICKED",
    "PROPOSAL_PICK",
    "REVIEW_CHOOSE",
    "REVIEW_CONFIRM",
    "REVIEW_IGNORE",
    "REVIEW_WRONG",
    "WRONG_ANSWER_VIEW",
    "SlackChannel",
    "SlackTransport",
    "help_text",
    "reply_parts",
    "written_by_a_person",
]
