"""The little that differs between the asyncio and blocking clients beyond async/await
(written by hand in both _async/ and _sync/)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable
from typing import Any, TypeVar

import grpc

Channel = grpc.Channel
sleep = time.sleep

T = TypeVar("T")
RequestStream = Iterable[T]  # what a client stream accepts


def resolve(value: Any) -> Any:
    """A token provider's answer; the blocking client cannot await one."""
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: no "coroutine was never awaited" warning
        raise TypeError("the blocking client needs a token_provider that returns a str, not a coroutine")
    return value


def create_channel(options: Any) -> Channel:
    return options.create_channel()


def request_stream(requests: Any) -> Any:
    """The blocking channel wants an iterator (a list is accepted too)."""
    return iter(requests)
