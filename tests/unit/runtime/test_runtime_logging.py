"""JSON log lines: fields, trace id from the request context, redaction of credentials."""

from __future__ import annotations

import io
import json
import logging

import pytest
from wework.server.runtime.context import RequestContext, bind_request, reset_request
from wework.server.runtime.logging import configure_logging
from wework.server.settings import LoggingConfig


@pytest.fixture
def logs():
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(LoggingConfig(level="DEBUG"), stream=buf)
    yield lambda: [json.loads(line) for line in buf.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def test_line_fields_and_extras(logs):
    logging.getLogger("wework.test").info("hello %s", "world", extra={"tenant_id": "t1", "count": 3})
    [line] = logs()
    assert line["message"] == "hello world" and line["level"] == "INFO" and line["logger"] == "wework.test"
    assert (line["tenant_id"], line["count"]) == ("t1", 3)
    assert line["time"].endswith("+00:00") and "trace_id" not in line


def test_trace_and_span_id_come_from_the_request_context(logs):
    token = bind_request(RequestContext(trace_id="a" * 32, span_id="b" * 16))
    try:
        logging.getLogger("wework.test").warning("inside")
    finally:
        reset_request(token)
    [line] = logs()
    assert (line["trace_id"], line["span_id"]) == ("a" * 32, "b" * 16)


def test_sensitive_extras_and_call_credentials_are_redacted(logs):
    token = bind_request(RequestContext(trace_id="c" * 32, secrets=("wwk_live_secret",)))
    try:
        logging.getLogger("wework.test").info(
            "key wwk_live_secret seen", extra={"authorization": "Bearer x", "x-api-key": "k", "password": "p"})
        try:
            raise ValueError("bad key wwk_live_secret")
        except ValueError:
            logging.getLogger("wework.test").exception("failed")
    finally:
        reset_request(token)
    first, second = logs()
    assert first["authorization"] == first["x-api-key"] == first["password"] == "[REDACTED]"
    assert first["message"] == "key [REDACTED] seen"
    assert "wwk_live_secret" not in json.dumps([first, second])
    assert "ValueError: bad key [REDACTED]" in second["exception"]


def test_reconfiguring_replaces_the_handler(logs):
    handler = configure_logging(LoggingConfig(level="INFO", json_format=False), stream=io.StringIO())
    try:
        assert sum(1 for h in logging.getLogger().handlers if getattr(h, "_wework_handler", False)) == 1
    finally:
        logging.getLogger().removeHandler(handler)


def test_extras_are_redacted_by_the_one_list_of_credential_keys_plus_metadata(logs):
    logging.getLogger("wework.test").info("fields", extra={
        "loginToken": "t", "verification_code": "123456", "Proxy-Authorization": "Basic x",
        "metadata": {"authorization": "Bearer y"}, "tenant_id": "t1"})
    [line] = logs()
    for key in ("loginToken", "verification_code", "Proxy-Authorization", "metadata"):
        assert line[key] == "[REDACTED]", key
    assert line["tenant_id"] == "t1"
