"""The adapter to a real WeCom protocol provider over its REST API (docs/provider-http-api.md).

Retries are for failures that may pass: timeouts, connection errors and 5xx, with exponential
backoff and jitter, up to `max_retries` retries; once they are spent the call raises
`ProviderUnavailable`. A 4xx is the provider's answer and is never retried: it becomes a
`ProviderError` carrying the provider's code (404 on an instance: `InstanceNotFound`).
Retrying is safe because every call is idempotent on the provider's side: instances by guid,
sends by the Idempotency-Key header. An answer over 4 MiB is refused (BAD_RESPONSE), not held.
"""

from __future__ import annotations

import json as jsonlib
import logging
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from wework.server.http_client import TRANSPORT_ERRORS, AnswerTooLarge, SharedSession, describe, read_body
from wework.server.providers.base import (
    InstanceNotFound,
    Liveness,
    LoginQr,
    ProviderError,
    ProviderUnavailable,
    SendResult,
)
from wework.server.providers.wire import liveness_from_json, login_qr_from_json, send_result_from_json

log = logging.getLogger(__name__)


class HttpProviderConfig(BaseModel):
    base_url: str
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=3, ge=0)  # retries after the first attempt
    backoff_initial_seconds: float = Field(default=0.2, ge=0)
    backoff_max_seconds: float = Field(default=5.0, ge=0)
    backoff_jitter_seconds: float = Field(default=0.2, ge=0)


class _Retryable(Exception):
    """One attempt failed in a way that may pass (timeout, connection, 5xx)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# An answer larger than this is not a provider's JSON: refused instead of held in memory.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


def _error_body(status: int, reason: str, body: bytes) -> tuple[str | None, str]:
    try:
        err = jsonlib.loads(body).get("error") or {}
        return err.get("code"), err.get("message") or reason
    except (ValueError, AttributeError):
        return None, body[:200].decode(errors="replace") or reason


class HttpProvider:
    """Implements `wework.server.providers.base.Provider` over HTTP."""

    def __init__(self, config: HttpProviderConfig) -> None:
        self.config = config
        self._base_url = config.base_url.rstrip("/")  # + "/instances/...": a path prefix stays
        headers = {"Accept": "application/json"}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        # Proxies from HTTP(S)_PROXY / NO_PROXY apply, as to any outgoing client of the platform
        # that is not SSRF-guarded.
        self._session = SharedSession(timeout_seconds=config.timeout_seconds, headers=headers, trust_env=True)
        self.attempts = 0  # HTTP requests made, retries included

    # ---- Provider ------------------------------------------------------------------------

    async def create_instance(self, guid: str, *, config: dict[str, Any] | None = None) -> None:
        await self._call("POST", "/instances", json={"guid": guid, "config": config or {}}, guid=guid)

    async def get_login_qr(self, guid: str) -> LoginQr:
        return self._parse(login_qr_from_json, await self._call("POST", self._path(guid, "login-qr"), guid=guid))

    async def submit_verification_code(self, guid: str, code: str) -> None:
        await self._call("POST", self._path(guid, "verification"), json={"code": code}, guid=guid)

    async def send_message(self, guid: str, *, conversation_id: str, message_type: str,
                           content: dict[str, Any], idempotency_key: str) -> SendResult:
        body = {"conversation_id": conversation_id, "message_type": message_type, "content": content,
                "idempotency_key": idempotency_key}
        answer = await self._call("POST", self._path(guid, "messages"), json=body, guid=guid,
                                  headers={"Idempotency-Key": idempotency_key})
        return self._parse(send_result_from_json, answer)

    async def logout(self, guid: str) -> None:
        await self._call("POST", self._path(guid, "logout"), guid=guid)

    async def reconnect(self, guid: str, login_token: str | None) -> Liveness:
        answer = await self._call("POST", self._path(guid, "reconnect"), json={"login_token": login_token},
                                  guid=guid)
        return self._parse(liveness_from_json, answer)

    async def check_liveness(self, guid: str) -> Liveness:
        return self._parse(liveness_from_json, await self._call("GET", self._path(guid, "liveness"), guid=guid))

    async def close(self) -> None:
        await self._session.close()

    # ---- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _path(guid: str, action: str) -> str:
        return f"/instances/{quote(guid, safe='')}/{action}"

    @staticmethod
    def _parse(parse: Any, answer: Any) -> Any:
        try:
            return parse(answer)
        except (KeyError, TypeError, ValueError, AttributeError, AssertionError) as exc:
            raise ProviderError(f"unexpected provider response: {exc!r}", code="BAD_RESPONSE") from None

    async def _call(self, method: str, path: str, *, guid: str, json: Any = None,
                    headers: dict[str, str] | None = None) -> Any:
        cfg = self.config
        retrying = AsyncRetrying(
            stop=stop_after_attempt(cfg.max_retries + 1),
            wait=wait_exponential_jitter(multiplier=cfg.backoff_initial_seconds, max=cfg.backoff_max_seconds,
                                         jitter=cfg.backoff_jitter_seconds),
            retry=retry_if_exception_type(_Retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(method, path, guid=guid, json=json, headers=headers)
        except _Retryable as exc:
            raise ProviderUnavailable(f"{method} {path}: provider unavailable after {cfg.max_retries + 1} "
                                      f"attempt(s): {exc}", status=exc.status) from exc
        raise AssertionError("unreachable")  # AsyncRetrying either returns or raises

    async def _once(self, method: str, path: str, *, guid: str, json: Any,
                    headers: dict[str, str] | None) -> Any:
        self.attempts += 1
        try:
            async with self._session().request(method, self._base_url + path, json=json, headers=headers,
                                               allow_redirects=False) as response:
                status, reason = response.status, response.reason or ""
                body = await read_body(response, MAX_ANSWER_BYTES)
        except AnswerTooLarge as exc:
            raise ProviderError(f"provider answered HTTP {status}: {exc}", code="BAD_RESPONSE", status=status) from None
        except TimeoutError as exc:
            raise _Retryable(f"timed out after {self.config.timeout_seconds}s ({type(exc).__name__})") from exc
        except TRANSPORT_ERRORS as exc:
            raise _Retryable(f"connection failed: {describe(exc)}") from exc
        if status >= 500:
            code, message = _error_body(status, reason, body)
            raise _Retryable(f"HTTP {status} {code or ''} {message}".replace("  ", " "), status=status)
        if status >= 400:
            raise self._map_error(status, reason, body, guid)
        if status >= 300:  # redirects are not followed: the provider's API does not use them
            raise ProviderError(f"provider answered HTTP {status}, a redirect", code="BAD_RESPONSE", status=status)
        if status == 204 or not body:
            return None
        try:
            return jsonlib.loads(body)
        except ValueError:
            raise ProviderError(f"provider answered {status} with a non-JSON body",
                                code="BAD_RESPONSE", status=status) from None

    @staticmethod
    def _map_error(status: int, reason: str, body: bytes, guid: str) -> ProviderError:
        code, message = _error_body(status, reason, body)
        if status in (401, 403):
            return ProviderError(f"provider rejected our credentials: {message}", code="UNAUTHORIZED",
                                 status=status)
        if status == 404 and code in (None, "INSTANCE_NOT_FOUND"):
            err = InstanceNotFound(guid)
            err.status = status
            return err
        if status == 429:
            # Not retried here (only timeouts, connection errors and 5xx are); the caller paces.
            return ProviderError(message, code=code or "RATE_LIMITED", retryable=True, status=status)
        return ProviderError(message, code=code or f"HTTP_{status}", status=status)

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("provider call failed (attempt %d), retrying in %.2fs: %s", state.attempt_number,
                    state.next_action.sleep if state.next_action else 0.0, exc)
