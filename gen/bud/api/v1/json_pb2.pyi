from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
FIELD_JSON_FIELD_NUMBER: _ClassVar[int]
field_json: _descriptor.FieldDescriptor
ONEOF_JSON_FIELD_NUMBER: _ClassVar[int]
oneof_json: _descriptor.FieldDescriptor
MESSAGE_JSON_FIELD_NUMBER: _ClassVar[int]
message_json: _descriptor.FieldDescriptor
SSE_FIELD_NUMBER: _ClassVar[int]
sse: _descriptor.FieldDescriptor

class FieldJson(_message.Message):
    __slots__ = ("null_if_unset", "raw", "omit_empty")
    NULL_IF_UNSET_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    OMIT_EMPTY_FIELD_NUMBER: _ClassVar[int]
    null_if_unset: bool
    raw: bool
    omit_empty: bool
    def __init__(self, null_if_unset: _Optional[bool] = ..., raw: _Optional[bool] = ..., omit_empty: _Optional[bool] = ...) -> None: ...

class OneofJson(_message.Message):
    __slots__ = ("inline", "null_if_unset")
    INLINE_FIELD_NUMBER: _ClassVar[int]
    NULL_IF_UNSET_FIELD_NUMBER: _ClassVar[int]
    inline: bool
    null_if_unset: bool
    def __init__(self, inline: _Optional[bool] = ..., null_if_unset: _Optional[bool] = ...) -> None: ...

class MessageJson(_message.Message):
    __slots__ = ("unwrap",)
    UNWRAP_FIELD_NUMBER: _ClassVar[int]
    unwrap: bool
    def __init__(self, unwrap: _Optional[bool] = ...) -> None: ...

class ServerSentEvents(_message.Message):
    __slots__ = ("method", "when_field", "done_data", "event_field")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_FIELD_NUMBER: _ClassVar[int]
    DONE_DATA_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_FIELD_NUMBER: _ClassVar[int]
    method: str
    when_field: str
    done_data: str
    event_field: str
    def __init__(self, method: _Optional[str] = ..., when_field: _Optional[str] = ..., done_data: _Optional[str] = ..., event_field: _Optional[str] = ...) -> None: ...
