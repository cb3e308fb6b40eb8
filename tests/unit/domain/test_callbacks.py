"""Provider callbacks, pure parts: signatures, the envelope read at ingest, dedupe keys, parsing."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from wework.domain.callbacks import (
    MalformedCallback,
    check_receipt,
    check_signature,
    dedupe_key,
    envelope,
    event_type_of,
    parse,
    retry_delay,
    sign,
    verify_signature,
)

SECRET = "s3cret"
BODY = b'{"event_id":"e1","guid":"g1","notify_type":12004,"data":{"conversation_id":"c"},"time":"2026-11-28T00:00:00Z"}'


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    expected = "v1=" + hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, BODY) == expected
    assert check_signature(SECRET, "1700000000", expected, BODY, 1700000010, 300) is None


@pytest.mark.parametrize(("timestamp", "signature", "now", "reason"), [
    ("", "x", 1700000000, "missing timestamp"),
    ("abc", "x", 1700000000, "missing timestamp"),
    ("1700000000", None, 1700000301, "stale timestamp"),
    ("1700000000", None, 1699999699, "stale timestamp"),
    ("1700000000", "v1=deadbeef", 1700000000, "malformed signature"),
    ("1700000000", "v1=" + "0" * 64, 1700000000, "bad signature"),
    ("-1700000000", None, 1700000000, "missing timestamp"),
    ("1700000001", None, 1700000000, "bad signature"),  # signed for another timestamp
])
def test_refused_signatures_say_why(timestamp, signature, now, reason):
    signature = signature or sign(SECRET, 1700000000, BODY)
    assert check_signature(SECRET, timestamp, signature, BODY, now, 300) == reason


def test_one_good_signature_among_several_suffices():
    good = sign(SECRET, 1700000000, BODY)
    assert check_signature(SECRET, "1700000000", f"v1={'0' * 64} {good}", BODY, 1700000000, 300) is None
    assert check_signature(SECRET, "1700000000", sign("old", 1700000000, BODY), BODY, 1700000000, 300) \
        == "bad signature"


def test_envelope_never_fails_and_dedupe_prefers_the_event_id():
    env = envelope(BODY)
    assert (env.guid, env.notify_type, env.event_id) == ("g1", 12004, "e1")
    assert dedupe_key(BODY, env) == "ev:e1"
    for raw in (b"not json", b"[1,2]", b'{"guid": true, "notify_type": "x"}'):
        bad = envelope(raw)
        assert (bad.guid, bad.notify_type, bad.event_id) == ("", 0, None)
        assert dedupe_key(raw, bad).startswith("h:")
    no_id = json.dumps({"guid": "g1", "notify_type": 11010}).encode()
    assert dedupe_key(no_id, envelope(no_id)) == dedupe_key(no_id, envelope(no_id))
    other = json.dumps({"guid": "g2", "notify_type": 11010}).encode()
    assert dedupe_key(no_id, envelope(no_id)) != dedupe_key(other, envelope(other))
    long_id = json.dumps({"guid": "g", "notify_type": 1, "event_id": "x" * 300}).encode()
    assert len(dedupe_key(long_id, envelope(long_id))) <= 128


def test_parse_accepts_callbacks_and_names_what_is_wrong():
    cb = parse(BODY.decode())
    assert (cb.guid, cb.notify_type, cb.event_id, cb.data) == ("g1", 12004, "e1", {"conversation_id": "c"})
    assert cb.time is not None and cb.time.utcoffset() is not None
    for raw, words in (("nope", "not JSON"), ("[]", "not a JSON object"), ('{"notify_type": 1}', "guid"),
                       ('{"guid": "g"}', "notify_type"), ('{"guid": "g", "notify_type": 1, "data": []}', "data"),
                       ('{"guid": "g", "notify_type": 1, "time": "2026-01-01T00:00:00"}', "UTC offset")):
        with pytest.raises(MalformedCallback, match=words):
            parse(raw)
    with pytest.raises(MalformedCallback, match="msg_id"):
        check_receipt(parse('{"guid": "g", "notify_type": 12002, "data": {}}'))
    check_receipt(parse('{"guid": "g", "notify_type": 12002, "data": {"msg_id": "m"}}'))


def test_event_types_and_backoff():
    assert event_type_of(11005) == "account.online" and event_type_of(12002) == "message.delivered"
    assert event_type_of(4242) == "unknown"
    assert [retry_delay(n, 1.0, 5.0).total_seconds() for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_the_signature_header_is_parsed_strictly_and_its_canonical_form_ignores_the_shape():
    good = sign(SECRET, 1700000000, BODY)
    other = "v1=" + "0" * 64
    reason, canonical = verify_signature(SECRET, "1700000000", good, BODY, 1700000000, 300)
    assert (reason, canonical) == (None, good)
    # Reshaped headers of the same request: refused outright, or the same canonical signature.
    for header in (f"{good} {good}", f" {good}", f"{good} ", f"{good}  {other}", f"{good}\t{other}",
                   good.upper(), f"{good},{other}", " ".join([other[:-1] + str(i) for i in range(4)] + [good])):
        assert verify_signature(SECRET, "1700000000", header, BODY, 1700000000, 300) == ("malformed signature", "")
    assert verify_signature(SECRET, "1700000000", f"{other} {good}", BODY, 1700000000, 300) == (None, good)
