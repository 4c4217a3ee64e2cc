"""Event fan-out: any number of subscribers, none of which can slow the agent loop."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from .events import Event


class Subscription:
    """An async iterator over the session's events from the moment it was made.

    Events are queued without bound and delivered in order; a consumer that falls
    behind only costs memory, never time in the loop. Iteration ends when the
    subscription or the session is closed.
    """

    def __init__(self, owner: EventHub) -> None:
        self._owner = owner
        self._items: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def _push(self, event: Event) -> None:
        self._items.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Stop receiving events; a pending ``async for`` ends after queued events."""
        if not self._closed:
            self._closed = True
            self._owner._remove(self)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def drain(self) -> list[Event]:
        """Take every queued event without waiting."""
        items = list(self._items)
        self._items.clear()
        return items

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EventHub:
    """Delivers each event to every live subscription."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        self._subscriptions.append(subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def emit(self, event: Event) -> None:
        for subscription in self._subscriptions:
            subscription._push(event)

    def close(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()
