"""The one redaction of credentials in provider payloads (wework.domain.redaction)."""

from __future__ import annotations

import copy

from wework.domain.redaction import REDACTED, is_sensitive, redact, restore_secrets, split_secrets


def test_sensitive_keys_are_found_at_any_depth_and_in_any_spelling():
    body = {"guid": "g", "notify_type": 11005,
            "data": {"login_token": "t1", "user_info": {"name": "n", "loginToken": "t2"},
                     "steps": [{"VERIFY-CODE": "123456"}, {"note": "token is not a key here"}],
                     "error_code": "E1", "code": "kept: too generic", "empty_token": "", "token": None}}
    original = copy.deepcopy(body)
    redacted, found = split_secrets(body)
    assert body == original  # the input is not changed
    assert redacted["data"]["login_token"] == REDACTED
    assert redacted["data"]["user_info"] == {"name": "n", "loginToken": REDACTED}
    assert redacted["data"]["steps"] == [{"VERIFY-CODE": REDACTED}, {"note": "token is not a key here"}]
    assert (redacted["data"]["error_code"], redacted["data"]["code"]) == ("E1", "kept: too generic")
    assert redacted["data"]["token"] is None and redacted["guid"] == "g"
    assert sorted(found, key=str) == sorted([(("data", "login_token"), "t1"),
                                             (("data", "user_info", "loginToken"), "t2"),
                                             (("data", "steps", 0, "VERIFY-CODE"), "123456")], key=str)
    assert restore_secrets(copy.deepcopy(redacted), found) == original
    assert redact({"a": [1, 2]}) == {"a": [1, 2]}
    assert is_sensitive("Verification_Code") and is_sensitive("access-token") and not is_sensitive("qr_payload")


def test_the_link_of_a_received_media_file_is_taken_out_like_a_credential():
    from wework.domain.callbacks import MESSAGE_RECEIVED, split_callback_secrets

    link = "https://cdn.provider.example/f/1?sig=abc"
    body = {"guid": "g", "notify_type": MESSAGE_RECEIVED,
            "data": {"message_type": "file", "content": {"url": link, "file_name": "a.pdf"}}}
    redacted, found = split_callback_secrets(MESSAGE_RECEIVED, body)
    assert redacted["data"]["content"] == {"url": REDACTED, "file_name": "a.pdf"}
    assert found == [(("data", "content", "url"), link)]
    assert body["data"]["content"]["url"] == link  # the input is not changed
    assert restore_secrets(redacted, found)["data"]["content"]["url"] == link
    # A shared link (a link message) or another callback's url is content, not the provider's file.
    shared = {**body, "data": {"message_type": "link", "content": {"url": link}}}
    assert split_callback_secrets(MESSAGE_RECEIVED, shared) == (shared, [])
    assert split_callback_secrets(12005, body) == (body, [])
