"""Blocking HTTP calls for synchronous tests, over the standard library's urllib.

The platform's HTTP stack is aiohttp (decision 0036); async tests use aiohttp's ClientSession,
synchronous ones (e2e, drills, chart) these. Like the platform's clients: no redirects followed
(a 3xx is the answer), no proxies from the environment, and an HTTP error status is an answer,
not an exception. Connection failures raise one of TRANSPORT_ERRORS.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException)  # URLError is an OSError


@dataclass
class Answer:
    status_code: int
    headers: Message
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx, which request() answers


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def request(method: str, url: str, *, content: bytes | None = None, json: Any = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> Answer:
    headers = dict(headers or {})
    if json is not None:
        content = jsonlib.dumps(json).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=content, headers=headers, method=method)
    try:
        with _opener.open(req, timeout=timeout) as answer:
            return Answer(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return Answer(refused.code, refused.headers, refused.read())


def get(url: str, **kwargs: Any) -> Answer:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Answer:
    return request("POST", url, **kwargs)


def delete(url: str, **kwargs: Any) -> Answer:
    return request("DELETE", url, **kwargs)
