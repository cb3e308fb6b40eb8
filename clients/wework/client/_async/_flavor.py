"""The little that differs between the asyncio and blocking clients beyond async/await
(written by hand in both _async/ and _sync/)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, Iterable
from typing import Any, TypeVar

import grpc.aio

Channel = grpc.aio.Channel
sleep = asyncio.sleep

T = TypeVar("T")
RequestStream = Iterable[T] | AsyncIterable[T]  # what a client stream accepts


async def resolve(value: Any) -> Any:
    """A token provider's answer: coroutine functions are awaited."""
    return await value if inspect.isawaitable(value) else value


def create_channel(options: Any) -> Channel:
    return options.create_aio_channel()


def request_stream(requests: Any) -> Any:
    """grpc.aio takes an iterable or an async iterable of requests as it is."""
    return requests
