"""Web customers in tests: each one a client with its own session, as a browser or API client has."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient

from bot.core import TellerCore
from bot.web.sessions import SESSION_COOKIE, Identities


def page_customer(client: TestClient) -> TestClient:
    """``client`` after loading the chat page: its cookie jar holds the session the page got."""
    assert client.get("/").status_code == 200 and SESSION_COOKIE in client.cookies
    return client


def new_customer(app: Any) -> TestClient:
    """A new browser on ``app``: its own client, with the session the chat page gives it."""
    return page_customer(TestClient(app))


def api_session(client: TestClient | httpx.Client) -> dict[str, str]:
    """Headers of a new API session (``POST /api/sessions``)."""
    response = client.post("/api/sessions")
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def stored_user_id(
    core: TellerCore, client: TestClient | None = None, headers: dict[str, str] | None = None
) -> str:
    """The user id the store keeps for the customer of ``client`` (its cookie) or ``headers``
    (a bearer session)."""
    token = headers["Authorization"].split()[1] if headers else client.cookies[SESSION_COOKIE]  # type: ignore[union-attr]
    customer = Identities.from_store(core.store).session(token)
    assert customer is not None
    return customer.user_id


def offer(core: TellerCore, client: TestClient, *values: str, labels: dict[str, str] | None = None) -> None:
    """Record an answer of Teller's to ``client``'s customer offering buttons with ``values`` (a
    pressed ``intent:`` or ``entry:`` value is honoured only when a recent answer offered it), each
    labelled ``labels[value]`` (default: the value)."""
    from bot.storage import NewExchange

    user = stored_user_id(core, client)
    core.store.conversations.record_exchange(
        NewExchange(
            "web",
            user,
            user,
            "which one?",
            "Is your question one of these?",
            route="clarify",
            choices=tuple(((labels or {}).get(value, value), value) for value in values),
        )
    )
