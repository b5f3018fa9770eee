import datetime

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

class ScanVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCAN_VERDICT_UNSPECIFIED: _ClassVar[ScanVerdict]
    SCAN_VERDICT_CLEAN: _ClassVar[ScanVerdict]
    SCAN_VERDICT_INFECTED: _ClassVar[ScanVerdict]
    SCAN_VERDICT_ERROR: _ClassVar[ScanVerdict]

class ModelProvider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_PROVIDER_UNSPECIFIED: _ClassVar[ModelProvider]
    MODEL_PROVIDER_HUGGING_FACE: _ClassVar[ModelProvider]
    MODEL_PROVIDER_OPENAI_COMPATIBLE: _ClassVar[ModelProvider]
    MODEL_PROVIDER_CUSTOM: _ClassVar[ModelProvider]

class ScanStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCAN_STATUS_UNSPECIFIED: _ClassVar[ScanStatus]
    SCAN_STATUS_PENDING: _ClassVar[ScanStatus]
    SCAN_STATUS_CLEAN: _ClassVar[ScanStatus]
    SCAN_STATUS_INFECTED: _ClassVar[ScanStatus]
    SCAN_STATUS_UNSAFE: _ClassVar[ScanStatus]
    SCAN_STATUS_ERROR: _ClassVar[ScanStatus]

class ImportState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_STATE_UNSPECIFIED: _ClassVar[ImportState]
    IMPORT_STATE_RUNNING: _ClassVar[ImportState]
    IMPORT_STATE_SUCCEEDED: _ClassVar[ImportState]
    IMPORT_STATE_FAILED: _ClassVar[ImportState]
SCAN_VERDICT_UNSPECIFIED: ScanVerdict
SCAN_VERDICT_CLEAN: ScanVerdict
SCAN_VERDICT_INFECTED: ScanVerdict
SCAN_VERDICT_ERROR: ScanVerdict
MODEL_PROVIDER_UNSPECIFIED: ModelProvider
MODEL_PROVIDER_HUGGING_FACE: ModelProvider
MODEL_PROVIDER_OPENAI_COMPATIBLE: ModelProvider
MODEL_PROVIDER_CUSTOM: ModelProvider
SCAN_STATUS_UNSPECIFIED: ScanStatus
SCAN_STATUS_PENDING: ScanStatus
SCAN_STATUS_CLEAN: ScanStatus
SCAN_STATUS_INFECTED: ScanStatus
SCAN_STATUS_UNSAFE: ScanStatus
SCAN_STATUS_ERROR: ScanStatus
IMPORT_STATE_UNSPECIFIED: ImportState
IMPORT_STATE_RUNNING: ImportState
IMPORT_STATE_SUCCEEDED: ImportState
IMPORT_STATE_FAILED: ImportState

class ModelFile(_message.Message):
    __slots__ = ("path", "size_bytes", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size_bytes: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ModelRequirements(_message.Message):
    __slots__ = ("weights_bytes", "kv_cache_bytes_per_1k_tokens", "memory_bytes_estimate")
    WEIGHTS_BYTES_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_BYTES_PER_1K_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    weights_bytes: int
    kv_cache_bytes_per_1k_tokens: int
    memory_bytes_estimate: int
    def __init__(self, weights_bytes: _Optional[int] = ..., kv_cache_bytes_per_1k_tokens: _Optional[int] = ..., memory_bytes_estimate: _Optional[int] = ...) -> None: ...

class RegistryModel(_message.Message):
    __slots__ = ("id", "name", "hugging_face_id", "local_path", "architecture", "parameter_count", "context_length", "license_id", "tags", "scan", "create_time", "provider", "model_type", "dtype", "license", "requirements", "revision", "files", "scan_status", "update_time", "description", "total_size_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HUGGING_FACE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    LICENSE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SCAN_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SCAN_STATUS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    hugging_face_id: str
    local_path: str
    architecture: str
    parameter_count: int
    context_length: int
    license_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    scan: ScanReport
    create_time: _timestamp_pb2.Timestamp
    provider: ModelProvider
    model_type: str
    dtype: str
    license: License
    requirements: ModelRequirements
    revision: str
    files: _containers.RepeatedCompositeFieldContainer[ModelFile]
    scan_status: ScanStatus
    update_time: _timestamp_pb2.Timestamp
    description: str
    total_size_bytes: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., hugging_face_id: _Optional[str] = ..., local_path: _Optional[str] = ..., architecture: _Optional[str] = ..., parameter_count: _Optional[int] = ..., context_length: _Optional[int] = ..., license_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., scan: _Optional[_Union[ScanReport, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., provider: _Optional[_Union[ModelProvider, str]] = ..., model_type: _Optional[str] = ..., dtype: _Optional[str] = ..., license: _Optional[_Union[License, _Mapping]] = ..., requirements: _Optional[_Union[ModelRequirements, _Mapping]] = ..., revision: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ModelFile, _Mapping]]] = ..., scan_status: _Optional[_Union[ScanStatus, str]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ..., total_size_bytes: _Optional[int] = ...) -> None: ...

class ScanReport(_message.Message):
    __slots__ = ("verdict", "findings", "files_scanned", "scan_time", "status", "reason", "summary", "files", "clamav_version")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    FILES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    SCAN_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CLAMAV_VERSION_FIELD_NUMBER: _ClassVar[int]
    verdict: ScanVerdict
    findings: _containers.RepeatedCompositeFieldContainer[ScanFinding]
    files_scanned: int
    scan_time: _timestamp_pb2.Timestamp
    status: ScanStatus
    reason: str
    summary: str
    files: _containers.RepeatedCompositeFieldContainer[ScannedFile]
    clamav_version: str
    def __init__(self, verdict: _Optional[_Union[ScanVerdict, str]] = ..., findings: _Optional[_Iterable[_Union[ScanFinding, _Mapping]]] = ..., files_scanned: _Optional[int] = ..., scan_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[ScanStatus, str]] = ..., reason: _Optional[str] = ..., summary: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ScannedFile, _Mapping]]] = ..., clamav_version: _Optional[str] = ...) -> None: ...

class ScannedFile(_message.Message):
    __slots__ = ("path", "sha256", "size_bytes", "status", "findings", "error")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    size_bytes: int
    status: ScanStatus
    findings: _containers.RepeatedCompositeFieldContainer[ScanFinding]
    error: str
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., status: _Optional[_Union[ScanStatus, str]] = ..., findings: _Optional[_Iterable[_Union[ScanFinding, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class ScanFinding(_message.Message):
    __slots__ = ("path", "scanner", "detail", "severity", "message")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SCANNER_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    path: str
    scanner: str
    detail: str
    severity: str
    message: str
    def __init__(self, path: _Optional[str] = ..., scanner: _Optional[str] = ..., detail: _Optional[str] = ..., severity: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class License(_message.Message):
    __slots__ = ("id", "name", "url", "commercial_use", "known", "attribution_required", "share_alike", "use_restrictions", "user_threshold", "acceptable_use_policy_url", "family", "text", "source", "card_license_name", "card_license_link", "notes")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    COMMERCIAL_USE_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    SHARE_ALIKE_FIELD_NUMBER: _ClassVar[int]
    USE_RESTRICTIONS_FIELD_NUMBER: _ClassVar[int]
    USER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ACCEPTABLE_USE_POLICY_URL_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CARD_LICENSE_NAME_FIELD_NUMBER: _ClassVar[int]
    CARD_LICENSE_LINK_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    url: str
    commercial_use: bool
    known: bool
    attribution_required: bool
    share_alike: bool
    use_restrictions: bool
    user_threshold: int
    acceptable_use_policy_url: str
    family: str
    text: str
    source: str
    card_license_name: str
    card_license_link: str
    notes: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., url: _Optional[str] = ..., commercial_use: _Optional[bool] = ..., known: _Optional[bool] = ..., attribution_required: _Optional[bool] = ..., share_alike: _Optional[bool] = ..., use_restrictions: _Optional[bool] = ..., user_threshold: _Optional[int] = ..., acceptable_use_policy_url: _Optional[str] = ..., family: _Optional[str] = ..., text: _Optional[str] = ..., source: _Optional[str] = ..., card_license_name: _Optional[str] = ..., card_license_link: _Optional[str] = ..., notes: _Optional[str] = ...) -> None: ...

class ImportOperation(_message.Message):
    __slots__ = ("id", "source", "state", "stage", "bytes_done", "bytes_total", "model_id", "error", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    source: str
    state: ImportState
    stage: str
    bytes_done: int
    bytes_total: int
    model_id: str
    error: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., source: _Optional[str] = ..., state: _Optional[_Union[ImportState, str]] = ..., stage: _Optional[str] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., model_id: _Optional[str] = ..., error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BenchmarkResult(_message.Message):
    __slots__ = ("id", "model_id", "benchmark", "metric", "value", "create_time", "deployment_name", "model_name", "hardware", "engine_config", "load_points", "source", "notes")
    class EngineConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    LOAD_POINTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    model_id: str
    benchmark: str
    metric: str
    value: float
    create_time: _timestamp_pb2.Timestamp
    deployment_name: str
    model_name: str
    hardware: HardwareProfile
    engine_config: _containers.ScalarMap[str, str]
    load_points: _containers.RepeatedCompositeFieldContainer[BenchmarkLoadPoint]
    source: str
    notes: str
    def __init__(self, id: _Optional[str] = ..., model_id: _Optional[str] = ..., benchmark: _Optional[str] = ..., metric: _Optional[str] = ..., value: _Optional[float] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deployment_name: _Optional[str] = ..., model_name: _Optional[str] = ..., hardware: _Optional[_Union[HardwareProfile, _Mapping]] = ..., engine_config: _Optional[_Mapping[str, str]] = ..., load_points: _Optional[_Iterable[_Union[BenchmarkLoadPoint, _Mapping]]] = ..., source: _Optional[str] = ..., notes: _Optional[str] = ...) -> None: ...

class HardwareProfile(_message.Message):
    __slots__ = ("cpu_model", "cpu_cores", "gpu_name", "gpu_count", "memory_bytes", "key")
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    GPU_NAME_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    cpu_model: str
    cpu_cores: int
    gpu_name: str
    gpu_count: int
    memory_bytes: int
    key: str
    def __init__(self, cpu_model: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., gpu_name: _Optional[str] = ..., gpu_count: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., key: _Optional[str] = ...) -> None: ...

class BenchmarkLoadPoint(_message.Message):
    __slots__ = ("concurrency", "requests", "errors", "duration_s", "requests_per_s", "output_tokens_per_s", "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p90_ms", "tpot_p99_ms", "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms", "input_tokens_mean", "output_tokens_mean")
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    TTFT_P50_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_P90_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_P99_MS_FIELD_NUMBER: _ClassVar[int]
    TPOT_P50_MS_FIELD_NUMBER: _ClassVar[int]
    TPOT_P90_MS_FIELD_NUMBER: _ClassVar[int]
    TPOT_P99_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_P50_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_P90_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_P99_MS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_MEAN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_MEAN_FIELD_NUMBER: _ClassVar[int]
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p90_ms: float
    ttft_p99_ms: float
    tpot_p50_ms: float
    tpot_p90_ms: float
    tpot_p99_ms: float
    e2e_p50_ms: float
    e2e_p90_ms: float
    e2e_p99_ms: float
    input_tokens_mean: float
    output_tokens_mean: float
    def __init__(self, concurrency: _Optional[int] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., duration_s: _Optional[float] = ..., requests_per_s: _Optional[float] = ..., output_tokens_per_s: _Optional[float] = ..., ttft_p50_ms: _Optional[float] = ..., ttft_p90_ms: _Optional[float] = ..., ttft_p99_ms: _Optional[float] = ..., tpot_p50_ms: _Optional[float] = ..., tpot_p90_ms: _Optional[float] = ..., tpot_p99_ms: _Optional[float] = ..., e2e_p50_ms: _Optional[float] = ..., e2e_p90_ms: _Optional[float] = ..., e2e_p99_ms: _Optional[float] = ..., input_tokens_mean: _Optional[float] = ..., output_tokens_mean: _Optional[float] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: RegistryModel
    def __init__(self, model: _Optional[_Union[RegistryModel, _Mapping]] = ...) -> None: ...

class CreateModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: RegistryModel
    def __init__(self, model: _Optional[_Union[RegistryModel, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: RegistryModel
    def __init__(self, model: _Optional[_Union[RegistryModel, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "provider", "architecture", "license_id", "scan_status", "max_parameters")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    LICENSE_ID_FIELD_NUMBER: _ClassVar[int]
    SCAN_STATUS_FIELD_NUMBER: _ClassVar[int]
    MAX_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    provider: ModelProvider
    architecture: str
    license_id: str
    scan_status: ScanStatus
    max_parameters: int
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., provider: _Optional[_Union[ModelProvider, str]] = ..., architecture: _Optional[str] = ..., license_id: _Optional[str] = ..., scan_status: _Optional[_Union[ScanStatus, str]] = ..., max_parameters: _Optional[int] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RegistryModel]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[RegistryModel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("model_id", "force")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    force: bool
    def __init__(self, model_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ("model_id", "model", "update_mask")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model: RegistryModel
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, model_id: _Optional[str] = ..., model: _Optional[_Union[RegistryModel, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: RegistryModel
    def __init__(self, model: _Optional[_Union[RegistryModel, _Mapping]] = ...) -> None: ...

class GetModelLicenseRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class GetModelLicenseResponse(_message.Message):
    __slots__ = ("license",)
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    license: License
    def __init__(self, license: _Optional[_Union[License, _Mapping]] = ...) -> None: ...

class GetImportOperationRequest(_message.Message):
    __slots__ = ("operation_id",)
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    operation_id: str
    def __init__(self, operation_id: _Optional[str] = ...) -> None: ...

class GetImportOperationResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: ImportOperation
    def __init__(self, operation: _Optional[_Union[ImportOperation, _Mapping]] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ImportModelRequest(_message.Message):
    __slots__ = ("source", "revision", "name", "tags")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    source: str
    revision: str
    name: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source: _Optional[str] = ..., revision: _Optional[str] = ..., name: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportModelResponse(_message.Message):
    __slots__ = ("model", "operation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    model: RegistryModel
    operation: ImportOperation
    def __init__(self, model: _Optional[_Union[RegistryModel, _Mapping]] = ..., operation: _Optional[_Union[ImportOperation, _Mapping]] = ...) -> None: ...

class ScanModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ScanModelResponse(_message.Message):
    __slots__ = ("report", "operation")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    report: ScanReport
    operation: ImportOperation
    def __init__(self, report: _Optional[_Union[ScanReport, _Mapping]] = ..., operation: _Optional[_Union[ImportOperation, _Mapping]] = ...) -> None: ...

class ResolveModelForDeploymentRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ResolveModelForDeploymentResponse(_message.Message):
    __slots__ = ("model_id", "local_path", "hugging_face_id", "revision", "files", "scan_status")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    HUGGING_FACE_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SCAN_STATUS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    local_path: str
    hugging_face_id: str
    revision: str
    files: _containers.RepeatedCompositeFieldContainer[ModelFile]
    scan_status: ScanStatus
    def __init__(self, model_id: _Optional[str] = ..., local_path: _Optional[str] = ..., hugging_face_id: _Optional[str] = ..., revision: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ModelFile, _Mapping]]] = ..., scan_status: _Optional[_Union[ScanStatus, str]] = ...) -> None: ...

class ListLicensesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLicensesResponse(_message.Message):
    __slots__ = ("licenses",)
    LICENSES_FIELD_NUMBER: _ClassVar[int]
    licenses: _containers.RepeatedCompositeFieldContainer[License]
    def __init__(self, licenses: _Optional[_Iterable[_Union[License, _Mapping]]] = ...) -> None: ...

class CreateBenchmarkResultRequest(_message.Message):
    __slots__ = ("model_id", "result")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    result: BenchmarkResult
    def __init__(self, model_id: _Optional[str] = ..., result: _Optional[_Union[BenchmarkResult, _Mapping]] = ...) -> None: ...

class CreateBenchmarkResultResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: BenchmarkResult
    def __init__(self, result: _Optional[_Union[BenchmarkResult, _Mapping]] = ...) -> None: ...

class ListBenchmarkResultsRequest(_message.Message):
    __slots__ = ("model_id", "page_size", "page_token", "hardware_profile", "deployment_name", "model_name", "gpu_name")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_PROFILE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    GPU_NAME_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    page_size: int
    page_token: str
    hardware_profile: str
    deployment_name: str
    model_name: str
    gpu_name: str
    def __init__(self, model_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., hardware_profile: _Optional[str] = ..., deployment_name: _Optional[str] = ..., model_name: _Optional[str] = ..., gpu_name: _Optional[str] = ...) -> None: ...

class ListBenchmarkResultsResponse(_message.Message):
    __slots__ = ("results", "next_page_token")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BenchmarkResult]
    next_page_token: str
    def __init__(self, results: _Optional[_Iterable[_Union[BenchmarkResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetLeaderboardRequest(_message.Message):
    __slots__ = ("benchmark", "metric", "limit", "hardware_profile", "refresh")
    BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_PROFILE_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    benchmark: str
    metric: str
    limit: int
    hardware_profile: str
    refresh: bool
    def __init__(self, benchmark: _Optional[str] = ..., metric: _Optional[str] = ..., limit: _Optional[int] = ..., hardware_profile: _Optional[str] = ..., refresh: _Optional[bool] = ...) -> None: ...

class LeaderboardEntry(_message.Message):
    __slots__ = ("rank", "model_id", "model_name", "value", "benchmark", "metric", "hardware_profile", "concurrency", "source", "higher_is_better", "result_id", "task")
    RANK_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_PROFILE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    rank: int
    model_id: str
    model_name: str
    value: float
    benchmark: str
    metric: str
    hardware_profile: str
    concurrency: int
    source: str
    higher_is_better: bool
    result_id: str
    task: str
    def __init__(self, rank: _Optional[int] = ..., model_id: _Optional[str] = ..., model_name: _Optional[str] = ..., value: _Optional[float] = ..., benchmark: _Optional[str] = ..., metric: _Optional[str] = ..., hardware_profile: _Optional[str] = ..., concurrency: _Optional[int] = ..., source: _Optional[str] = ..., higher_is_better: _Optional[bool] = ..., result_id: _Optional[str] = ..., task: _Optional[str] = ...) -> None: ...

class GetLeaderboardResponse(_message.Message):
    __slots__ = ("entries", "refresh_time", "next_refresh_time")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_REFRESH_TIME_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LeaderboardEntry]
    refresh_time: _timestamp_pb2.Timestamp
    next_refresh_time: _timestamp_pb2.Timestamp
    def __init__(self, entries: _Optional[_Iterable[_Union[LeaderboardEntry, _Mapping]]] = ..., refresh_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_refresh_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
