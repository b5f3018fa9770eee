import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRoutingRequest(_message.Message):
    __slots__ = ("since_revision", "gateway_id")
    SINCE_REVISION_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    since_revision: int
    gateway_id: str
    def __init__(self, since_revision: _Optional[int] = ..., gateway_id: _Optional[str] = ...) -> None: ...

class WatchRoutingResponse(_message.Message):
    __slots__ = ("revision", "reset", "upsert_keys", "delete_key_ids", "upsert_deployments", "delete_deployment_ids", "upsert_projects", "delete_project_ids")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    UPSERT_KEYS_FIELD_NUMBER: _ClassVar[int]
    DELETE_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    UPSERT_DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    DELETE_DEPLOYMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    UPSERT_PROJECTS_FIELD_NUMBER: _ClassVar[int]
    DELETE_PROJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    reset: bool
    upsert_keys: _containers.RepeatedCompositeFieldContainer[RouteKey]
    delete_key_ids: _containers.RepeatedScalarFieldContainer[str]
    upsert_deployments: _containers.RepeatedCompositeFieldContainer[RouteDeployment]
    delete_deployment_ids: _containers.RepeatedScalarFieldContainer[str]
    upsert_projects: _containers.RepeatedCompositeFieldContainer[RouteProject]
    delete_project_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[int] = ..., reset: _Optional[bool] = ..., upsert_keys: _Optional[_Iterable[_Union[RouteKey, _Mapping]]] = ..., delete_key_ids: _Optional[_Iterable[str]] = ..., upsert_deployments: _Optional[_Iterable[_Union[RouteDeployment, _Mapping]]] = ..., delete_deployment_ids: _Optional[_Iterable[str]] = ..., upsert_projects: _Optional[_Iterable[_Union[RouteProject, _Mapping]]] = ..., delete_project_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RouteKey(_message.Message):
    __slots__ = ("id", "prefix", "key_hash", "project_id", "deployment_ids", "expire_time", "requests_per_minute", "tokens_per_minute")
    ID_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    KEY_HASH_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    prefix: str
    key_hash: bytes
    project_id: str
    deployment_ids: _containers.RepeatedScalarFieldContainer[str]
    expire_time: _timestamp_pb2.Timestamp
    requests_per_minute: int
    tokens_per_minute: int
    def __init__(self, id: _Optional[str] = ..., prefix: _Optional[str] = ..., key_hash: _Optional[bytes] = ..., project_id: _Optional[str] = ..., deployment_ids: _Optional[_Iterable[str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ...) -> None: ...

class RouteDeployment(_message.Message):
    __slots__ = ("id", "project_id", "name", "endpoints", "requests_per_minute", "tokens_per_minute", "ready", "create_time", "prompt_id", "prompt_version", "max_concurrency", "prompt_label", "caching", "cold_start", "pricing", "image")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PROMPT_LABEL_FIELD_NUMBER: _ClassVar[int]
    CACHING_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    PRICING_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    name: str
    endpoints: _containers.RepeatedCompositeFieldContainer[RouteEndpoint]
    requests_per_minute: int
    tokens_per_minute: int
    ready: bool
    create_time: _timestamp_pb2.Timestamp
    prompt_id: str
    prompt_version: int
    max_concurrency: int
    prompt_label: str
    caching: bool
    cold_start: bool
    pricing: RoutePricing
    image: RouteImageSettings
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., name: _Optional[str] = ..., endpoints: _Optional[_Iterable[_Union[RouteEndpoint, _Mapping]]] = ..., requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ..., ready: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., prompt_id: _Optional[str] = ..., prompt_version: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., prompt_label: _Optional[str] = ..., caching: _Optional[bool] = ..., cold_start: _Optional[bool] = ..., pricing: _Optional[_Union[RoutePricing, _Mapping]] = ..., image: _Optional[_Union[RouteImageSettings, _Mapping]] = ...) -> None: ...

class RouteImageSettings(_message.Message):
    __slots__ = ("max_images", "sizes", "default_size", "default_steps", "max_steps", "images_per_minute")
    MAX_IMAGES_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SIZE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    max_images: int
    sizes: _containers.RepeatedScalarFieldContainer[str]
    default_size: str
    default_steps: int
    max_steps: int
    images_per_minute: int
    def __init__(self, max_images: _Optional[int] = ..., sizes: _Optional[_Iterable[str]] = ..., default_size: _Optional[str] = ..., default_steps: _Optional[int] = ..., max_steps: _Optional[int] = ..., images_per_minute: _Optional[int] = ...) -> None: ...

class RoutePricing(_message.Message):
    __slots__ = ("input_micros_per_million", "output_micros_per_million", "request_micros", "image_micros")
    INPUT_MICROS_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MICROS_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_MICROS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_MICROS_FIELD_NUMBER: _ClassVar[int]
    input_micros_per_million: int
    output_micros_per_million: int
    request_micros: int
    image_micros: int
    def __init__(self, input_micros_per_million: _Optional[int] = ..., output_micros_per_million: _Optional[int] = ..., request_micros: _Optional[int] = ..., image_micros: _Optional[int] = ...) -> None: ...

class RouteBudget(_message.Message):
    __slots__ = ("id", "api_key_id", "period", "limit_micros", "alert_thresholds", "hard_stop", "webhook_url")
    ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    ALERT_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    HARD_STOP_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    id: str
    api_key_id: str
    period: str
    limit_micros: int
    alert_thresholds: _containers.RepeatedScalarFieldContainer[int]
    hard_stop: bool
    webhook_url: str
    def __init__(self, id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., period: _Optional[str] = ..., limit_micros: _Optional[int] = ..., alert_thresholds: _Optional[_Iterable[int]] = ..., hard_stop: _Optional[bool] = ..., webhook_url: _Optional[str] = ...) -> None: ...

class RouteEndpoint(_message.Message):
    __slots__ = ("address", "served_model_name")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    address: str
    served_model_name: str
    def __init__(self, address: _Optional[str] = ..., served_model_name: _Optional[str] = ...) -> None: ...

class RouteProject(_message.Message):
    __slots__ = ("id", "name", "budgets")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    budgets: _containers.RepeatedCompositeFieldContainer[RouteBudget]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., budgets: _Optional[_Iterable[_Union[RouteBudget, _Mapping]]] = ...) -> None: ...

class ReportLoadRequest(_message.Message):
    __slots__ = ("gateway_id", "deployments")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentLoad]
    def __init__(self, gateway_id: _Optional[str] = ..., deployments: _Optional[_Iterable[_Union[DeploymentLoad, _Mapping]]] = ...) -> None: ...

class DeploymentLoad(_message.Message):
    __slots__ = ("deployment_id", "in_flight", "queued", "requests_total", "last_request_time", "endpoints")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LAST_REQUEST_TIME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    in_flight: int
    queued: int
    requests_total: int
    last_request_time: _timestamp_pb2.Timestamp
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointLoad]
    def __init__(self, deployment_id: _Optional[str] = ..., in_flight: _Optional[int] = ..., queued: _Optional[int] = ..., requests_total: _Optional[int] = ..., last_request_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointLoad, _Mapping]]] = ...) -> None: ...

class EndpointLoad(_message.Message):
    __slots__ = ("address", "served_model_name", "in_flight")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    address: str
    served_model_name: str
    in_flight: int
    def __init__(self, address: _Optional[str] = ..., served_model_name: _Optional[str] = ..., in_flight: _Optional[int] = ...) -> None: ...

class ReportLoadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WakeDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id", "gateway_id")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    gateway_id: str
    def __init__(self, deployment_id: _Optional[str] = ..., gateway_id: _Optional[str] = ...) -> None: ...

class WakeDeploymentResponse(_message.Message):
    __slots__ = ("woke",)
    WOKE_FIELD_NUMBER: _ClassVar[int]
    woke: bool
    def __init__(self, woke: _Optional[bool] = ...) -> None: ...
