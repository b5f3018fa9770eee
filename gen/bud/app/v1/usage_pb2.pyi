import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageRecord(_message.Message):
    __slots__ = ("request_id", "project_id", "api_key_id", "deployment_id", "prompt_tokens", "completion_tokens", "latency_ms", "status_code", "time", "operation", "client_request_id", "prompt_id", "prompt_version", "prompt_deployment_id", "cached", "cost_usd", "images", "image_size", "image_steps")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_STEPS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    project_id: str
    api_key_id: str
    deployment_id: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    status_code: int
    time: _timestamp_pb2.Timestamp
    operation: str
    client_request_id: str
    prompt_id: str
    prompt_version: int
    prompt_deployment_id: str
    cached: bool
    cost_usd: str
    images: int
    image_size: str
    image_steps: int
    def __init__(self, request_id: _Optional[str] = ..., project_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., latency_ms: _Optional[float] = ..., status_code: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., operation: _Optional[str] = ..., client_request_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., prompt_version: _Optional[int] = ..., prompt_deployment_id: _Optional[str] = ..., cached: _Optional[bool] = ..., cost_usd: _Optional[str] = ..., images: _Optional[int] = ..., image_size: _Optional[str] = ..., image_steps: _Optional[int] = ...) -> None: ...

class RecordUsageRequest(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[UsageRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[UsageRecord, _Mapping]]] = ...) -> None: ...

class RecordUsageResponse(_message.Message):
    __slots__ = ("stored", "refused")
    STORED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    refused: _containers.RepeatedCompositeFieldContainer[RefusedUsageRecord]
    def __init__(self, stored: _Optional[int] = ..., refused: _Optional[_Iterable[_Union[RefusedUsageRecord, _Mapping]]] = ...) -> None: ...

class RefusedUsageRecord(_message.Message):
    __slots__ = ("request_id", "index", "reason", "field", "message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    index: int
    reason: str
    field: str
    message: str
    def __init__(self, request_id: _Optional[str] = ..., index: _Optional[int] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class QueryUsageRequest(_message.Message):
    __slots__ = ("project_id", "start_date", "end_date", "api_key_id", "deployment_id", "prompt_id", "prompt_deployment_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_date: str
    end_date: str
    api_key_id: str
    deployment_id: str
    prompt_id: str
    prompt_deployment_id: str
    def __init__(self, project_id: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., api_key_id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., prompt_deployment_id: _Optional[str] = ...) -> None: ...

class UsageBucket(_message.Message):
    __slots__ = ("date", "api_key_id", "deployment_id", "requests", "prompt_tokens", "completion_tokens", "errors", "prompt_id", "prompt_version", "prompt_deployment_id", "cached_requests", "cost_usd", "images")
    DATE_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CACHED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    date: str
    api_key_id: str
    deployment_id: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: int
    prompt_id: str
    prompt_version: int
    prompt_deployment_id: str
    cached_requests: int
    cost_usd: str
    images: int
    def __init__(self, date: _Optional[str] = ..., api_key_id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., errors: _Optional[int] = ..., prompt_id: _Optional[str] = ..., prompt_version: _Optional[int] = ..., prompt_deployment_id: _Optional[str] = ..., cached_requests: _Optional[int] = ..., cost_usd: _Optional[str] = ..., images: _Optional[int] = ...) -> None: ...

class QueryUsageResponse(_message.Message):
    __slots__ = ("buckets", "total_cost_usd")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_USD_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[UsageBucket]
    total_cost_usd: str
    def __init__(self, buckets: _Optional[_Iterable[_Union[UsageBucket, _Mapping]]] = ..., total_cost_usd: _Optional[str] = ...) -> None: ...
