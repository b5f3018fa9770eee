import datetime

from google.api import annotations_pb2 as _annotations_pb2
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
SCAN_VERDICT_UNSPECIFIED: ScanVerdict
SCAN_VERDICT_CLEAN: ScanVerdict
SCAN_VERDICT_INFECTED: ScanVerdict
SCAN_VERDICT_ERROR: ScanVerdict

class RegistryModel(_message.Message):
    __slots__ = ("id", "name", "hugging_face_id", "local_path", "architecture", "parameter_count", "context_length", "license_id", "tags", "scan", "create_time")
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
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., hugging_face_id: _Optional[str] = ..., local_path: _Optional[str] = ..., architecture: _Optional[str] = ..., parameter_count: _Optional[int] = ..., context_length: _Optional[int] = ..., license_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., scan: _Optional[_Union[ScanReport, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScanReport(_message.Message):
    __slots__ = ("verdict", "findings", "files_scanned", "scan_time")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    FILES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    SCAN_TIME_FIELD_NUMBER: _ClassVar[int]
    verdict: ScanVerdict
    findings: _containers.RepeatedCompositeFieldContainer[ScanFinding]
    files_scanned: int
    scan_time: _timestamp_pb2.Timestamp
    def __init__(self, verdict: _Optional[_Union[ScanVerdict, str]] = ..., findings: _Optional[_Iterable[_Union[ScanFinding, _Mapping]]] = ..., files_scanned: _Optional[int] = ..., scan_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScanFinding(_message.Message):
    __slots__ = ("path", "scanner", "detail")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SCANNER_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    path: str
    scanner: str
    detail: str
    def __init__(self, path: _Optional[str] = ..., scanner: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class License(_message.Message):
    __slots__ = ("id", "name", "url", "commercial_use")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    COMMERCIAL_USE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    url: str
    commercial_use: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., url: _Optional[str] = ..., commercial_use: _Optional[bool] = ...) -> None: ...

class BenchmarkResult(_message.Message):
    __slots__ = ("id", "model_id", "benchmark", "metric", "value", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    model_id: str
    benchmark: str
    metric: str
    value: float
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., model_id: _Optional[str] = ..., benchmark: _Optional[str] = ..., metric: _Optional[str] = ..., value: _Optional[float] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RegistryModel]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[RegistryModel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ImportModelRequest(_message.Message):
    __slots__ = ("source", "revision", "name")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    source: str
    revision: str
    name: str
    def __init__(self, source: _Optional[str] = ..., revision: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ImportModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: RegistryModel
    def __init__(self, model: _Optional[_Union[RegistryModel, _Mapping]] = ...) -> None: ...

class ScanModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ScanModelResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: ScanReport
    def __init__(self, report: _Optional[_Union[ScanReport, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ListBenchmarkResultsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BenchmarkResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BenchmarkResult, _Mapping]]] = ...) -> None: ...

class GetLeaderboardRequest(_message.Message):
    __slots__ = ("benchmark", "metric", "limit")
    BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    benchmark: str
    metric: str
    limit: int
    def __init__(self, benchmark: _Optional[str] = ..., metric: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class LeaderboardEntry(_message.Message):
    __slots__ = ("rank", "model_id", "model_name", "value")
    RANK_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    model_id: str
    model_name: str
    value: float
    def __init__(self, rank: _Optional[int] = ..., model_id: _Optional[str] = ..., model_name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class GetLeaderboardResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LeaderboardEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LeaderboardEntry, _Mapping]]] = ...) -> None: ...
