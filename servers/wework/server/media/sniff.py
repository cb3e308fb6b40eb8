"""The content type of a file from its first bytes (puremagic's signature tables), never from
its name or the caller's declaration."""

from __future__ import annotations

import puremagic
from wework.domain.media import UNKNOWN_TYPE

# Signatures puremagic knows by extension only.
_BY_EXTENSION = {".amr": "audio/amr", ".jfif": "image/jpeg", ".jpg": "image/jpeg", ".exe": "application/x-dosexec"}
SNIFF_BYTES = 64 * 1024


def sniff_content_type(head: bytes) -> str:
    """The MIME type of the file starting with `head`; application/octet-stream if unknown."""
    try:
        matches = puremagic.magic_string(head[:SNIFF_BYTES])
    except (puremagic.PureError, ValueError):
        return UNKNOWN_TYPE
    for match in matches:  # best (longest signature) first
        mime = match.mime_type or _BY_EXTENSION.get(match.extension, "")
        if mime:
            return mime.lower()
    return UNKNOWN_TYPE
