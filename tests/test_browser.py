"""The web chat page in a real headless Chromium (Debian's), against a real server on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.assistant import build_core
from bot.settings import get_settings
from bot.web.app import create_app
from tests.servers import serve_in_thread

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (apt-get install chromium "
    "chromium-driver; .ci/run does it)",
)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations are console errors
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_customer_chats_picks_a_choice_and_gives_feedback(teller_env: Path, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    core = build_core(get_settings())
    wait = WebDriverWait(browser, 20)

    def bot_bubbles() -> list:  # type: ignore[type-arg]
        return browser.find_elements(By.CSS_SELECTOR, ".msg.bot[data-message-id]")

    with serve_in_thread(create_app(core)) as url:
        browser.get(url + "/")
        box = wait.until(ec.element_to_be_clickable((By.ID, "text")))
        box.send_keys("What's the overdraft fee?\n")
        wait.until(lambda _: len(bot_bubbles()) == 1)
        answer = bot_bubbles()[0]
        assert answer.get_attribute("data-route") == "faq"
        assert "overdraft" in answer.text.lower()
        # "Not helpful" is stored as feedback on that very reply.
        answer.find_element(By.CSS_SELECTOR, '.feedback button[data-value="feedback:not_helpful"]').click()
        wait.until(lambda _: answer.find_elements(By.CSS_SELECTOR, ".thanks"))
        [(entry, message)] = core.store.feedback.feedback()
        assert entry.helpful is False and message.id == answer.get_attribute("data-message-id")

        # A message that ends in a handoff offers a button; pressing it sends its value.
        box.send_keys("I want to talk to a real person\n")
        wait.until(lambda _: len(bot_bubbles()) == 2)
        assert bot_bubbles()[1].get_attribute("data-route") == "handoff"
        assert browser.find_elements(By.CSS_SELECTOR, ".msg.me")[-1].text == "I want to talk to a real person"
    history = core.store.conversations.history()
    assert [m.direction for m in history] == ["in", "out", "in", "out"]
    # The page's script and style are all allowed by its Content-Security-Policy.
    blocked = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert blocked == []
    core.close()
