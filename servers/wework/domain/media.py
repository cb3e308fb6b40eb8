"""Media rules: kinds, the types each kind allows, WeCom's size limits, file names and storage keys.

Pure: no I/O. The limits are WeCom's for temporary media (docs/media.md): a file larger or of
another type would be refused by WeCom at send time, so the platform refuses it at upload.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from wework.domain.errors import FieldViolation

MB = 1024 * 1024


class MediaKind(StrEnum):
    IMAGE = "image"
    VOICE = "voice"
    VIDEO = "video"
    FILE = "file"


@dataclass(frozen=True)
class KindRule:
    max_bytes: int
    # Sniffed MIME types allowed; None: any type except EXECUTABLE_TYPES.
    allowed: frozenset[str] | None


KIND_RULES: dict[MediaKind, KindRule] = {
    MediaKind.IMAGE: KindRule(10 * MB, frozenset({"image/jpeg", "image/png"})),
    MediaKind.VOICE: KindRule(2 * MB, frozenset({"audio/amr"})),
    MediaKind.VIDEO: KindRule(10 * MB, frozenset({"video/mp4"})),
    MediaKind.FILE: KindRule(20 * MB, None),
}
MIN_BYTES = 6  # WeCom refuses media of 5 bytes or less
UNKNOWN_TYPE = "application/octet-stream"
# Programs never travel as media, whatever their name says.
EXECUTABLE_TYPES = frozenset({
    "application/vnd.microsoft.portable-executable", "application/x-dosexec", "application/x-msdownload",
    "application/x-executable", "application/x-elf", "application/x-mach-binary", "application/x-sharedlib",
    "application/java-archive", "application/x-msi",
})
FILE_NAME_MAX = 255
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MIME_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@dataclass(frozen=True)
class Media:
    id: str
    tenant_id: str
    kind: MediaKind
    file_name: str
    content_type: str
    size_bytes: int
    sha256: str
    storage_key: str
    source: str  # "upload" | "received"
    created_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass(frozen=True)
class UploadDeclaration:
    kind: MediaKind | None
    file_name: str
    declared_content_type: str
    size_bytes: int
    sha256: str
    request_id: str


def sanitize_file_name(name: str) -> str:
    """The last path component, NFC, without control or separator characters, at most 255
    characters (the extension kept); "file" when nothing is left. Shown to recipients only."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".").strip()
    if len(name) > FILE_NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 16 else ""
        name = (stem if ext else name)[: FILE_NAME_MAX - len(ext) - (1 if ext else 0)] + ("." + ext if ext else "")
    return name or "file"


def check_declaration(d: UploadDeclaration) -> list[FieldViolation]:
    """What is wrong with an upload's metadata, before any byte is read."""
    out: list[FieldViolation] = []
    p = "metadata"
    if d.kind is None:
        out.append(FieldViolation(f"{p}.kind", "kind is required (IMAGE, VOICE, VIDEO or FILE)", "REQUIRED"))
    if d.size_bytes <= 0:
        out.append(FieldViolation(f"{p}.size_bytes", "size_bytes is required and must be positive", "REQUIRED"))
    elif d.size_bytes < MIN_BYTES:
        out.append(FieldViolation(f"{p}.size_bytes", f"media must be at least {MIN_BYTES} bytes"))
    elif d.kind is not None and d.size_bytes > KIND_RULES[d.kind].max_bytes:
        out.append(FieldViolation(f"{p}.size_bytes", f"{d.kind.value} media are at most "
                                  f"{KIND_RULES[d.kind].max_bytes // MB} MB", "TOO_LARGE"))
    if d.sha256 and not SHA256_RE.match(d.sha256):
        out.append(FieldViolation(f"{p}.sha256", "sha256 must be 64 lower-case hex digits"))
    if d.declared_content_type and not MIME_RE.match(d.declared_content_type.lower()):
        out.append(FieldViolation(f"{p}.declared_content_type", "not a MIME type"))
    if len(d.file_name) > 1024:
        out.append(FieldViolation(f"{p}.file_name", "file_name is at most 1024 characters"))
    return out


def type_violation(kind: MediaKind, sniffed: str) -> FieldViolation | None:
    """Refuses a sniffed type the kind does not allow (a program renamed .jpg, a PDF as voice)."""
    rule = KIND_RULES[kind]
    if sniffed in EXECUTABLE_TYPES or (rule.allowed is not None and sniffed not in rule.allowed):
        allowed = ", ".join(sorted(rule.allowed)) if rule.allowed else "any type but programs"
        return FieldViolation("metadata.kind", f"the content is {sniffed}, not allowed for {kind.value} media "
                              f"(allowed: {allowed})", "CONTENT_TYPE_NOT_ALLOWED")
    return None


def storage_key(prefix: str, tenant_id: str, media_id: str) -> str:
    """The object key: the deployment's prefix, then the tenant, then the server-made id. Nothing
    the caller chose appears in it, so no name can reach another tenant's keys."""
    return f"{prefix}tenants/{tenant_id}/media/{media_id}"
