from bud.openai.v1 import chat_pb2 as _chat_pb2
from bud.openai.v1 import completion_pb2 as _completion_pb2
from bud.openai.v1 import embedding_pb2 as _embedding_pb2
from bud.openai.v1 import image_pb2 as _image_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Runner(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUNNER_UNSPECIFIED: _ClassVar[Runner]
    RUNNER_GENERATE: _ClassVar[Runner]
    RUNNER_POOLING: _ClassVar[Runner]
    RUNNER_DIFFUSION: _ClassVar[Runner]

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]
    MODEL_STATE_UNLOADING: _ClassVar[ModelState]
RUNNER_UNSPECIFIED: Runner
RUNNER_GENERATE: Runner
RUNNER_POOLING: Runner
RUNNER_DIFFUSION: Runner
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_FAILED: ModelState
MODEL_STATE_UNLOADING: ModelState

class EngineArgs(_message.Message):
    __slots__ = ("max_model_len", "dtype", "kv_cache_space_gib", "gpu_memory_utilization", "tensor_parallel_size", "max_num_seqs", "tool_call_parser", "reasoning_parser", "chat_template", "enforce_eager", "enable_prefix_caching", "seed", "tokenizer", "pipeline_parallel_size", "distributed_executor_backend")
    MAX_MODEL_LEN_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_SPACE_GIB_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    TENSOR_PARALLEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_NUM_SEQS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_PARSER_FIELD_NUMBER: _ClassVar[int]
    REASONING_PARSER_FIELD_NUMBER: _ClassVar[int]
    CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ENFORCE_EAGER_FIELD_NUMBER: _ClassVar[int]
    ENABLE_PREFIX_CACHING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_PARALLEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTED_EXECUTOR_BACKEND_FIELD_NUMBER: _ClassVar[int]
    max_model_len: int
    dtype: str
    kv_cache_space_gib: float
    gpu_memory_utilization: float
    tensor_parallel_size: int
    max_num_seqs: int
    tool_call_parser: str
    reasoning_parser: str
    chat_template: str
    enforce_eager: bool
    enable_prefix_caching: bool
    seed: int
    tokenizer: str
    pipeline_parallel_size: int
    distributed_executor_backend: str
    def __init__(self, max_model_len: _Optional[int] = ..., dtype: _Optional[str] = ..., kv_cache_space_gib: _Optional[float] = ..., gpu_memory_utilization: _Optional[float] = ..., tensor_parallel_size: _Optional[int] = ..., max_num_seqs: _Optional[int] = ..., tool_call_parser: _Optional[str] = ..., reasoning_parser: _Optional[str] = ..., chat_template: _Optional[str] = ..., enforce_eager: _Optional[bool] = ..., enable_prefix_caching: _Optional[bool] = ..., seed: _Optional[int] = ..., tokenizer: _Optional[str] = ..., pipeline_parallel_size: _Optional[int] = ..., distributed_executor_backend: _Optional[str] = ...) -> None: ...

class ModelSource(_message.Message):
    __slots__ = ("builtin", "local_path", "hugging_face", "registry_model_id", "registry")
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    HUGGING_FACE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    builtin: str
    local_path: str
    hugging_face: HuggingFaceModel
    registry_model_id: str
    registry: RegistryModelFiles
    def __init__(self, builtin: _Optional[str] = ..., local_path: _Optional[str] = ..., hugging_face: _Optional[_Union[HuggingFaceModel, _Mapping]] = ..., registry_model_id: _Optional[str] = ..., registry: _Optional[_Union[RegistryModelFiles, _Mapping]] = ...) -> None: ...

class RegistryModelFiles(_message.Message):
    __slots__ = ("model_id", "local_path", "sha256")
    class Sha256Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    local_path: str
    sha256: _containers.ScalarMap[str, str]
    def __init__(self, model_id: _Optional[str] = ..., local_path: _Optional[str] = ..., sha256: _Optional[_Mapping[str, str]] = ...) -> None: ...

class HuggingFaceModel(_message.Message):
    __slots__ = ("id", "revision")
    ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    id: str
    revision: str
    def __init__(self, id: _Optional[str] = ..., revision: _Optional[str] = ...) -> None: ...

class ServedModel(_message.Message):
    __slots__ = ("name", "source", "runner", "args", "state", "error", "max_model_len", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RUNNER_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_LEN_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: ModelSource
    runner: Runner
    args: EngineArgs
    state: ModelState
    error: str
    max_model_len: int
    owner: ModelOwner
    def __init__(self, name: _Optional[str] = ..., source: _Optional[_Union[ModelSource, _Mapping]] = ..., runner: _Optional[_Union[Runner, str]] = ..., args: _Optional[_Union[EngineArgs, _Mapping]] = ..., state: _Optional[_Union[ModelState, str]] = ..., error: _Optional[str] = ..., max_model_len: _Optional[int] = ..., owner: _Optional[_Union[ModelOwner, _Mapping]] = ...) -> None: ...

class ModelOwner(_message.Message):
    __slots__ = ("deployment_id", "generation")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    generation: int
    def __init__(self, deployment_id: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("name", "source", "runner", "args", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RUNNER_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: ModelSource
    runner: Runner
    args: EngineArgs
    owner: ModelOwner
    def __init__(self, name: _Optional[str] = ..., source: _Optional[_Union[ModelSource, _Mapping]] = ..., runner: _Optional[_Union[Runner, str]] = ..., args: _Optional[_Union[EngineArgs, _Mapping]] = ..., owner: _Optional[_Union[ModelOwner, _Mapping]] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ServedModel
    def __init__(self, model: _Optional[_Union[ServedModel, _Mapping]] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("name", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    owner: ModelOwner
    def __init__(self, name: _Optional[str] = ..., owner: _Optional[_Union[ModelOwner, _Mapping]] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ServedModel]
    def __init__(self, models: _Optional[_Iterable[_Union[ServedModel, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStats]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStats, _Mapping]]] = ...) -> None: ...

class ModelStats(_message.Message):
    __slots__ = ("name", "running_requests", "waiting_requests", "kv_cache_usage", "prompt_tokens_total", "generation_tokens_total", "inflight_requests")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUNNING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WAITING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_USAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GENERATION_TOKENS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    INFLIGHT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    running_requests: int
    waiting_requests: int
    kv_cache_usage: float
    prompt_tokens_total: int
    generation_tokens_total: int
    inflight_requests: int
    def __init__(self, name: _Optional[str] = ..., running_requests: _Optional[int] = ..., waiting_requests: _Optional[int] = ..., kv_cache_usage: _Optional[float] = ..., prompt_tokens_total: _Optional[int] = ..., generation_tokens_total: _Optional[int] = ..., inflight_requests: _Optional[int] = ...) -> None: ...

class GetRequestUsageRequest(_message.Message):
    __slots__ = ("usage_id",)
    USAGE_ID_FIELD_NUMBER: _ClassVar[int]
    usage_id: str
    def __init__(self, usage_id: _Optional[str] = ...) -> None: ...

class GetRequestUsageResponse(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "ended")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    ended: bool
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., ended: _Optional[bool] = ...) -> None: ...

class GeneratedImages(_message.Message):
    __slots__ = ("images", "usage", "revised_prompt", "steps")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    REVISED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    usage: _image_pb2.ImageUsage
    revised_prompt: str
    steps: int
    def __init__(self, images: _Optional[_Iterable[_Union[GeneratedImage, _Mapping]]] = ..., usage: _Optional[_Union[_image_pb2.ImageUsage, _Mapping]] = ..., revised_prompt: _Optional[str] = ..., steps: _Optional[int] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("data", "output_format", "width", "height", "seed", "index")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    output_format: str
    width: int
    height: int
    seed: int
    index: int
    def __init__(self, data: _Optional[bytes] = ..., output_format: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class ImageProgress(_message.Message):
    __slots__ = ("image_index", "step", "total_steps", "partial_image", "partial_image_index", "result")
    IMAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_IMAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    image_index: int
    step: int
    total_steps: int
    partial_image: GeneratedImage
    partial_image_index: int
    result: GeneratedImages
    def __init__(self, image_index: _Optional[int] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., partial_image: _Optional[_Union[GeneratedImage, _Mapping]] = ..., partial_image_index: _Optional[int] = ..., result: _Optional[_Union[GeneratedImages, _Mapping]] = ...) -> None: ...
