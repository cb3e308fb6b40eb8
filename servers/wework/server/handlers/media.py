"""MediaService handler: requests to use cases, media to protos."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from wework.domain.access import Permissions as P
from wework.domain.errors import FieldViolation, InvalidArgument
from wework.domain.media import Media, MediaKind, UploadDeclaration
from wework.server.application.media import MediaUseCases
from wework.server.handlers.convert import to_timestamp
from wework.server.runtime.context import current_principal
from wework.server.runtime.registry import ServiceRegistration
from wework.v1 import media_pb2 as pb
from wework.v1 import media_pb2_grpc as pb_grpc

METHOD_PERMISSIONS: dict[str, str | None] = {
    "UploadMedia": P.MEDIA_WRITE,
    "GetMedia": P.MEDIA_READ,
    "ListMedia": P.MEDIA_READ,
    "DeleteMedia": P.MEDIA_WRITE,
    "GetMediaDownloadUrl": P.MEDIA_READ,
    "DownloadMedia": P.MEDIA_READ,
}

KIND_IN = {pb.MEDIA_KIND_IMAGE: MediaKind.IMAGE, pb.MEDIA_KIND_VOICE: MediaKind.VOICE,
           pb.MEDIA_KIND_VIDEO: MediaKind.VIDEO, pb.MEDIA_KIND_FILE: MediaKind.FILE}
KIND_OUT = {v: k for k, v in KIND_IN.items()}
DOWNLOAD_CHUNK = 1024 * 1024


def media_to_pb(m: Media) -> pb.Media:
    return pb.Media(id=m.id, kind=KIND_OUT[m.kind], file_name=m.file_name, content_type=m.content_type,
                    size_bytes=m.size_bytes, sha256=m.sha256, source=m.source, create_time=to_timestamp(m.created_at))


def _declaration(first: pb.UploadMediaRequest | None) -> UploadDeclaration:
    if first is None or first.WhichOneof("data") != "metadata":
        raise InvalidArgument(FieldViolation("metadata", "the first message of UploadMedia must carry metadata",
                                             "REQUIRED"))
    m = first.metadata
    return UploadDeclaration(kind=KIND_IN.get(m.kind), file_name=m.file_name,
                             declared_content_type=m.declared_content_type, size_bytes=m.size_bytes,
                             sha256=m.sha256, request_id=m.request_id)


async def _chunks(stream: AsyncIterator[pb.UploadMediaRequest]) -> AsyncIterator[bytes]:
    async for request in stream:
        if request.WhichOneof("data") != "chunk":
            raise InvalidArgument(FieldViolation("metadata", "metadata may only come in the first message"))
        yield request.chunk


class MediaServiceHandler(pb_grpc.MediaServiceServicer):
    def __init__(self, media: MediaUseCases) -> None:
        self._media = media

    async def UploadMedia(self, request_iterator: Any, context: Any) -> pb.Media:
        stream = request_iterator.__aiter__()
        first = await anext(stream, None)
        media = await self._media.upload(current_principal(), _declaration(first), _chunks(stream))
        return media_to_pb(media)

    async def GetMedia(self, request, context):
        return media_to_pb(await self._media.get(current_principal(), request.id))

    async def ListMedia(self, request, context):
        if request.kind and request.kind not in KIND_IN:
            raise InvalidArgument(FieldViolation("kind", f"unknown kind {request.kind}"))
        page, token = await self._media.list(current_principal(), KIND_IN.get(request.kind), request.page_size,
                                             request.page_token)
        return pb.ListMediaResponse(media=[media_to_pb(m) for m in page], next_page_token=token)

    async def DeleteMedia(self, request, context):
        await self._media.delete(current_principal(), request.id)
        return pb.DeleteMediaResponse()

    async def GetMediaDownloadUrl(self, request, context):
        url, expires = await self._media.download_link(current_principal(), request.id, request.ttl_seconds)
        return pb.GetMediaDownloadUrlResponse(url=url, expire_time=to_timestamp(expires))

    async def DownloadMedia(self, request, context):
        media, chunks = await self._media.download(current_principal(), request.id)
        yield pb.DownloadMediaResponse(media=media_to_pb(media))
        async for chunk in chunks:
            for i in range(0, len(chunk), DOWNLOAD_CHUNK):
                yield pb.DownloadMediaResponse(chunk=chunk[i:i + DOWNLOAD_CHUNK])


def registration(handler: MediaServiceHandler) -> ServiceRegistration:
    return ServiceRegistration(
        name="media",
        service_full_name="wework.v1.MediaService",
        servicer=handler,
        add_to_server=pb_grpc.add_MediaServiceServicer_to_server,
        method_permissions=METHOD_PERMISSIONS,
    )
