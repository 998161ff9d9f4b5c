"""Chat-platform adapters. Each translates its platform's updates into :class:`bot.core.Incoming` and
renders :class:`bot.core.Outgoing` back; none holds business logic."""

from __future__ import annotations

from typing import Protocol

from fastapi import APIRouter


class Service(Protocol):
    """Something that runs alongside the server: started before it serves, stopped after."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Channel(Service, Protocol):
    """What ``teller serve`` needs from an adapter: a name, start/stop, and optional HTTP routes."""

    def router(self) -> APIRouter | None: ...
