from google.api import annotations_pb2 as _annotations_pb2
from wework.server.providers.puppet_service.gen.wechaty.deprecated import file_box_pb2 as _file_box_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import base_pb2 as _base_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import contact_pb2 as _contact_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import download_upload_pb2 as _download_upload_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import event_pb2 as _event_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import friendship_pb2 as _friendship_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import message_pb2 as _message_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import room_invitation_pb2 as _room_invitation_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import room_member_pb2 as _room_member_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import room_pb2 as _room_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import tag_pb2 as _tag_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
