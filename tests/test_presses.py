"""A double tap or click of a button is one press, answered once, wherever the ten-minute buckets of
:func:`bot.choices.press_id` fall."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.assistant import build_core
from bot.choices import PRESS_WINDOW, earlier_press, press_id
from bot.core import Incoming, TellerCore
from bot.settings import get_settings

VALUE = "What's the overdraft fee?"


@pytest.fixture()
def core(teller_env: Path) -> Iterator[TellerCore]:
    core = build_core(get_settings())
    yield core
    core.close()


def _press(platform_id: str) -> Incoming:
    return Incoming("telegram", "42", "7", platform_id, VALUE, pressed=True)


def _stored_presses(core: TellerCore) -> int:
    return sum(1 for m in core.store.conversations.history(None, 100) if m.direction == "in")


def test_press_ids_name_their_bucket_and_the_one_before() -> None:
    edge = 1_800_000_000 // PRESS_WINDOW * PRESS_WINDOW  # a bucket's first second
    before, after = (
        press_id("42", "1001", "7", VALUE, edge - 0.4),
        press_id("42", "1001", "7", VALUE, edge + 0.3),
    )
    assert before != after and earlier_press(after) == before
    assert press_id("42", "1001", "7", VALUE, edge + 599) == after  # ten minutes a bucket
    assert press_id("42", "1001", "8", VALUE, edge) != after  # another person's press
    for other in ("callback:123", "tg:42:1001", "press:42:1001:7:abc:x", "press:42:1001:7:abc:²", ""):
        assert earlier_press(other) is None


def test_a_double_tap_across_a_buckets_end_is_answered_once(core: TellerCore) -> None:
    now = time.time()
    edge = (now // PRESS_WINDOW) * PRESS_WINDOW
    first = core.handle(_press(press_id("42", "1001", "7", VALUE, edge - 0.4)))
    second = core.handle(_press(press_id("42", "1001", "7", VALUE, edge + 0.3)))
    assert not first.duplicate and second.duplicate and second.message_id == first.message_id
    assert _stored_presses(core) == 1


def test_a_press_ten_minutes_after_the_last_is_a_new_one(core: TellerCore) -> None:
    # The same button pressed again in the next bucket, the first press stored 11 minutes ago.
    now = time.time()
    edge = (now // PRESS_WINDOW) * PRESS_WINDOW
    first = core.handle(_press(press_id("42", "1001", "7", VALUE, edge - 0.4)))
    clock = core.store.database.clock
    real = clock._time_ns
    clock._time_ns = lambda: real() + 660 * 1_000_000_000  # type: ignore[method-assign]
    later = core.handle(_press(press_id("42", "1001", "7", VALUE, edge + 0.3)))
    assert not later.duplicate and later.message_id != first.message_id
    assert _stored_presses(core) == 2
