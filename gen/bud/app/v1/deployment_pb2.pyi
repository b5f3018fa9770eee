import datetime

from bud.engine.v1 import engine_service_pb2 as _engine_service_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeploymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATUS_UNSPECIFIED: _ClassVar[DeploymentStatus]
    DEPLOYMENT_STATUS_PENDING: _ClassVar[DeploymentStatus]
    DEPLOYMENT_STATUS_LOADING: _ClassVar[DeploymentStatus]
    DEPLOYMENT_STATUS_READY: _ClassVar[DeploymentStatus]
    DEPLOYMENT_STATUS_FAILED: _ClassVar[DeploymentStatus]
    DEPLOYMENT_STATUS_SCALED_TO_ZERO: _ClassVar[DeploymentStatus]

class ScalingAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCALING_ACTION_UNSPECIFIED: _ClassVar[ScalingAction]
    SCALING_ACTION_SCALE_UP: _ClassVar[ScalingAction]
    SCALING_ACTION_SCALE_DOWN: _ClassVar[ScalingAction]
    SCALING_ACTION_SCALE_TO_ZERO: _ClassVar[ScalingAction]
    SCALING_ACTION_WAKE: _ClassVar[ScalingAction]
DEPLOYMENT_STATUS_UNSPECIFIED: DeploymentStatus
DEPLOYMENT_STATUS_PENDING: DeploymentStatus
DEPLOYMENT_STATUS_LOADING: DeploymentStatus
DEPLOYMENT_STATUS_READY: DeploymentStatus
DEPLOYMENT_STATUS_FAILED: DeploymentStatus
DEPLOYMENT_STATUS_SCALED_TO_ZERO: DeploymentStatus
SCALING_ACTION_UNSPECIFIED: ScalingAction
SCALING_ACTION_SCALE_UP: ScalingAction
SCALING_ACTION_SCALE_DOWN: ScalingAction
SCALING_ACTION_SCALE_TO_ZERO: ScalingAction
SCALING_ACTION_WAKE: ScalingAction

class ModelSource(_message.Message):
    __slots__ = ("registry_model_id", "hugging_face_id", "local_path", "builtin")
    REGISTRY_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    HUGGING_FACE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    registry_model_id: str
    hugging_face_id: str
    local_path: str
    builtin: str
    def __init__(self, registry_model_id: _Optional[str] = ..., hugging_face_id: _Optional[str] = ..., local_path: _Optional[str] = ..., builtin: _Optional[str] = ...) -> None: ...

class EngineEndpoint(_message.Message):
    __slots__ = ("address", "served_model_name", "engine_id")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_ID_FIELD_NUMBER: _ClassVar[int]
    address: str
    served_model_name: str
    engine_id: str
    def __init__(self, address: _Optional[str] = ..., served_model_name: _Optional[str] = ..., engine_id: _Optional[str] = ...) -> None: ...

class PromptTarget(_message.Message):
    __slots__ = ("prompt_id", "version", "label", "project_id")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    version: int
    label: str
    project_id: str
    def __init__(self, prompt_id: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ..., project_id: _Optional[str] = ...) -> None: ...

class ScalingSettings(_message.Message):
    __slots__ = ("min_concurrency", "max_concurrency", "autoscale", "min_replicas", "max_replicas", "idle_timeout_seconds")
    MIN_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALE_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    min_concurrency: int
    max_concurrency: int
    autoscale: bool
    min_replicas: int
    max_replicas: int
    idle_timeout_seconds: int
    def __init__(self, min_concurrency: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., autoscale: _Optional[bool] = ..., min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., idle_timeout_seconds: _Optional[int] = ...) -> None: ...

class RateLimits(_message.Message):
    __slots__ = ("requests_per_minute", "tokens_per_minute", "images_per_minute")
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    requests_per_minute: int
    tokens_per_minute: int
    images_per_minute: int
    def __init__(self, requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ..., images_per_minute: _Optional[int] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("id", "project_id", "name", "model", "prompt", "endpoints", "engine_args", "runner", "scaling", "caching", "rate_limits", "status", "status_message", "create_time", "update_time", "ready_replicas", "desired_replicas", "pricing", "pricing_history", "image")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_ARGS_FIELD_NUMBER: _ClassVar[int]
    RUNNER_FIELD_NUMBER: _ClassVar[int]
    SCALING_FIELD_NUMBER: _ClassVar[int]
    CACHING_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    READY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    PRICING_FIELD_NUMBER: _ClassVar[int]
    PRICING_HISTORY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    name: str
    model: ModelSource
    prompt: PromptTarget
    endpoints: _containers.RepeatedCompositeFieldContainer[EngineEndpoint]
    engine_args: _engine_service_pb2.EngineArgs
    runner: _engine_service_pb2.Runner
    scaling: ScalingSettings
    caching: bool
    rate_limits: RateLimits
    status: DeploymentStatus
    status_message: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    ready_replicas: int
    desired_replicas: int
    pricing: Pricing
    pricing_history: _containers.RepeatedCompositeFieldContainer[Pricing]
    image: ImageSettings
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., name: _Optional[str] = ..., model: _Optional[_Union[ModelSource, _Mapping]] = ..., prompt: _Optional[_Union[PromptTarget, _Mapping]] = ..., endpoints: _Optional[_Iterable[_Union[EngineEndpoint, _Mapping]]] = ..., engine_args: _Optional[_Union[_engine_service_pb2.EngineArgs, _Mapping]] = ..., runner: _Optional[_Union[_engine_service_pb2.Runner, str]] = ..., scaling: _Optional[_Union[ScalingSettings, _Mapping]] = ..., caching: _Optional[bool] = ..., rate_limits: _Optional[_Union[RateLimits, _Mapping]] = ..., status: _Optional[_Union[DeploymentStatus, str]] = ..., status_message: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ready_replicas: _Optional[int] = ..., desired_replicas: _Optional[int] = ..., pricing: _Optional[_Union[Pricing, _Mapping]] = ..., pricing_history: _Optional[_Iterable[_Union[Pricing, _Mapping]]] = ..., image: _Optional[_Union[ImageSettings, _Mapping]] = ...) -> None: ...

class ImageSettings(_message.Message):
    __slots__ = ("max_images", "sizes", "default_size", "default_steps", "max_steps")
    MAX_IMAGES_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SIZE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    max_images: int
    sizes: _containers.RepeatedScalarFieldContainer[str]
    default_size: str
    default_steps: int
    max_steps: int
    def __init__(self, max_images: _Optional[int] = ..., sizes: _Optional[_Iterable[str]] = ..., default_size: _Optional[str] = ..., default_steps: _Optional[int] = ..., max_steps: _Optional[int] = ...) -> None: ...

class Pricing(_message.Message):
    __slots__ = ("input_per_million_usd", "output_per_million_usd", "per_request_usd", "per_image_usd", "effective_time")
    INPUT_PER_MILLION_USD_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PER_MILLION_USD_FIELD_NUMBER: _ClassVar[int]
    PER_REQUEST_USD_FIELD_NUMBER: _ClassVar[int]
    PER_IMAGE_USD_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    input_per_million_usd: str
    output_per_million_usd: str
    per_request_usd: str
    per_image_usd: str
    effective_time: _timestamp_pb2.Timestamp
    def __init__(self, input_per_million_usd: _Optional[str] = ..., output_per_million_usd: _Optional[str] = ..., per_request_usd: _Optional[str] = ..., per_image_usd: _Optional[str] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("project_id", "deployment")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    deployment: Deployment
    def __init__(self, project_id: _Optional[str] = ..., deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class CreateDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("project_id", "deployment_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    deployment_id: str
    def __init__(self, project_id: _Optional[str] = ..., deployment_id: _Optional[str] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ("project_id", "page_size", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    page_size: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments", "next_page_token")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    next_page_token: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateDeploymentRequest(_message.Message):
    __slots__ = ("deployment", "update_mask")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class DeleteDeploymentRequest(_message.Message):
    __slots__ = ("project_id", "deployment_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    deployment_id: str
    def __init__(self, project_id: _Optional[str] = ..., deployment_id: _Optional[str] = ...) -> None: ...

class DeleteDeploymentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ScalingEvent(_message.Message):
    __slots__ = ("id", "deployment_id", "action", "from_replicas", "to_replicas", "reason", "engine_id", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FROM_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TO_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ENGINE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    deployment_id: str
    action: ScalingAction
    from_replicas: int
    to_replicas: int
    reason: str
    engine_id: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., action: _Optional[_Union[ScalingAction, str]] = ..., from_replicas: _Optional[int] = ..., to_replicas: _Optional[int] = ..., reason: _Optional[str] = ..., engine_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListScalingEventsRequest(_message.Message):
    __slots__ = ("project_id", "deployment_id", "page_size", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    deployment_id: str
    page_size: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListScalingEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ScalingEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[ScalingEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
