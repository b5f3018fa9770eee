from bud.openai.v1 import response_pb2 as _response_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StoredResponse(_message.Message):
    __slots__ = ("project_id", "api_key_id", "response", "input_items")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    INPUT_ITEMS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    api_key_id: str
    response: _response_pb2.Response
    input_items: _containers.RepeatedCompositeFieldContainer[_response_pb2.ResponseInputItem]
    def __init__(self, project_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., response: _Optional[_Union[_response_pb2.Response, _Mapping]] = ..., input_items: _Optional[_Iterable[_Union[_response_pb2.ResponseInputItem, _Mapping]]] = ...) -> None: ...

class StoreResponsesRequest(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[StoredResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[StoredResponse, _Mapping]]] = ...) -> None: ...

class StoreResponsesResponse(_message.Message):
    __slots__ = ("stored", "refused")
    STORED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    refused: _containers.RepeatedCompositeFieldContainer[RefusedStoredResponse]
    def __init__(self, stored: _Optional[int] = ..., refused: _Optional[_Iterable[_Union[RefusedStoredResponse, _Mapping]]] = ...) -> None: ...

class RefusedStoredResponse(_message.Message):
    __slots__ = ("index", "response_id", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    response_id: str
    message: str
    def __init__(self, index: _Optional[int] = ..., response_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetStoredResponseRequest(_message.Message):
    __slots__ = ("project_id", "response_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    response_id: str
    def __init__(self, project_id: _Optional[str] = ..., response_id: _Optional[str] = ...) -> None: ...

class GetStoredResponseResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: StoredResponse
    def __init__(self, stored: _Optional[_Union[StoredResponse, _Mapping]] = ...) -> None: ...

class DeleteStoredResponseRequest(_message.Message):
    __slots__ = ("project_id", "response_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    response_id: str
    def __init__(self, project_id: _Optional[str] = ..., response_id: _Optional[str] = ...) -> None: ...

class DeleteStoredResponseResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("project_id", "response_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    response_id: str
    def __init__(self, project_id: _Optional[str] = ..., response_id: _Optional[str] = ...) -> None: ...

class GetConversationResponse(_message.Message):
    __slots__ = ("turns",)
    TURNS_FIELD_NUMBER: _ClassVar[int]
    turns: _containers.RepeatedCompositeFieldContainer[StoredResponse]
    def __init__(self, turns: _Optional[_Iterable[_Union[StoredResponse, _Mapping]]] = ...) -> None: ...
