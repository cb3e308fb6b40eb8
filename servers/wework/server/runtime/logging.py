"""JSON logs: one object per line on stderr, carrying the trace and span ids of the
active OpenTelemetry span (the call's, during a call; none outside).

Credentials never reach the output: metadata is never logged, extra fields with a
sensitive name (wework.domain.redaction.is_sensitive, the one list of credential keys, plus
`metadata`) are redacted, and the credential values of the current call are
scrubbed from the finished line (tracebacks included) as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from wework.domain.redaction import REDACTED, is_sensitive, normalise_key
from wework.server.observability.tracing import current_ids
from wework.server.runtime.context import current_request
from wework.server.settings import LoggingConfig

# Not a credential in a provider payload, but a call's gRPC metadata carries its credentials
# as a whole, so it is never written to a log line.
_LOG_ONLY_SENSITIVE_KEYS = frozenset({"metadata"})


def _is_sensitive(key: str) -> bool:
    return is_sensitive(key) or normalise_key(key) in _LOG_ONLY_SENSITIVE_KEYS


# Attributes every LogRecord has; anything else came in through `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_HANDLER_MARK = "_wework_handler"


def _scrub(line: str) -> str:
    req = current_request()
    if req is not None:
        for secret in req.secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
            escaped = json.dumps(secret)[1:-1]
            if escaped != secret and escaped in line:
                line = line.replace(escaped, REDACTED)
    return line


_ID_KEYS = frozenset({"trace_id", "span_id"})


def _trace_ids(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """Ids given with the record, else the active OpenTelemetry span's (inside a call: the
    call's span or a child of it), else the request context's; none outside any span."""
    trace_id, span_id = getattr(record, "trace_id", None), getattr(record, "span_id", None)
    if trace_id:
        return trace_id, span_id
    ids = current_ids()
    if ids is not None:
        return ids
    req = current_request()
    return (req.trace_id, req.span_id) if req else (None, None)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    trace_id, span_id = _trace_ids(record)
    if trace_id:
        out["trace_id"] = trace_id
    if span_id:
        out["span_id"] = span_id
    for key, value in record.__dict__.items():
        if key in _RECORD_ATTRS or key in out or key in _ID_KEYS or key.startswith("_"):
            continue
        out[key] = REDACTED if _is_sensitive(key) else value
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = _fields(record)
        # Tells the processes of `wework-server --workers N` apart in one log stream.
        out.setdefault("pid", record.process)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return _scrub(json.dumps(out, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """For a developer's terminal (logging.json_format=false); same fields, one line."""

    def format(self, record: logging.LogRecord) -> str:
        out = _fields(record)
        head = f"{out.pop('time')} {out.pop('level'):<7} {out.pop('logger')}: {out.pop('message')}"
        tail = " ".join(f"{k}={v}" for k, v in out.items())
        line = f"{head} {tail}" if tail else head
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return _scrub(line)


def configure_logging(config: LoggingConfig | None = None, *, stream: IO[str] | None = None) -> logging.Handler:
    """Installs the handler on the root logger, replacing one installed before."""
    config = config or LoggingConfig()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if config.json_format else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(config.level)
    return handler
