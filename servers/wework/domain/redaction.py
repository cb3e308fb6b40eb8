"""Credentials inside provider payloads: the one list of sensitive keys and the one redaction.

Providers put session credentials into their callbacks (the ONLINE callback's `login_token`,
verification codes, provider tokens). The platform needs some of them once, to apply the
callback, and must never keep or show them in clear (docs/callbacks.md, "Credentials in
callbacks"). The JSON log lines redact extra fields by the same list (runtime/logging.py). So the callback inbox splits a body at ingress, before it is stored:
`split_secrets` gives the body with every sensitive value replaced by REDACTED (that is what is
stored, listed and logged) and the values taken out by their JSON path (sealed with the field
cipher beside the row); the processor puts them back with `restore_secrets` only for the
effect. Tenant webhook payloads go through `redact` as well.

A key is sensitive when its normalised form (lower case, without "_" and "-") is in
SENSITIVE_KEYS, so `login_token`, `loginToken` and `LOGIN-TOKEN` are all caught, at any depth.
"""

from __future__ import annotations

from typing import Any

REDACTED = "[REDACTED]"

# Normalised key names (see normalise_key) whose values are credentials. Documented in
# docs/callbacks.md; extend both together.
SENSITIVE_KEYS: frozenset[str] = frozenset({
    # session and provider tokens
    "logintoken", "token", "accesstoken", "refreshtoken", "sessiontoken", "providertoken", "authtoken",
    "idtoken", "sessionkey", "sessionid", "ticket", "authorization", "proxyauthorization", "cookie",
    "setcookie",
    # verification codes
    "verificationcode", "verifycode", "smscode", "authcode", "captcha", "otp",
    # passwords, keys and secrets
    "password", "passwd", "secret", "clientsecret", "apikey", "xapikey", "privatekey",
})


def normalise_key(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def is_sensitive(key: str) -> bool:
    return normalise_key(key) in SENSITIVE_KEYS


Path = tuple[str | int, ...]


def split_secrets(value: Any) -> tuple[Any, list[tuple[Path, Any]]]:
    """(`value` with every sensitive value replaced by REDACTED, [(path, original value)]).
    The input is not changed; containers without secrets are returned as they are."""
    found: list[tuple[Path, Any]] = []
    return _split(value, (), found), found


def _split(value: Any, path: Path, found: list[tuple[Path, Any]]) -> Any:
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        changed = False
        for key, item in value.items():
            if isinstance(key, str) and is_sensitive(key) and item not in (None, "", REDACTED):
                found.append(((*path, key), item))
                out[key], changed = REDACTED, True
            else:
                new = _split(item, (*path, key), found)
                out[key] = new
                changed = changed or new is not item
        return out if changed else value
    if isinstance(value, list):
        items = [_split(item, (*path, i), found) for i, item in enumerate(value)]
        return items if any(new is not old for new, old in zip(items, value, strict=True)) else value
    return value


def redact(value: Any) -> Any:
    """`value` with every sensitive value replaced by REDACTED."""
    return split_secrets(value)[0]


def restore_secrets(value: Any, secrets: list[tuple[Path, Any]]) -> Any:
    """Puts the values `split_secrets` took out back at their paths (in place; returns `value`).
    A path that no longer exists is skipped."""
    for path, secret in secrets:
        target = value
        try:
            for step in path[:-1]:
                target = target[step]
            if target[path[-1]] == REDACTED:
                target[path[-1]] = secret
        except (KeyError, IndexError, TypeError):
            continue
    return value
