import datetime

from bud.api.v1 import json_pb2 as _json_pb2
from bud.openai.v1 import common_pb2 as _common_pb2
from bud.openai.v1 import response_pb2 as _response_pb2
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

class PromptType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROMPT_TYPE_UNSPECIFIED: _ClassVar[PromptType]
    PROMPT_TYPE_SIMPLE: _ClassVar[PromptType]

class VariableType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VARIABLE_TYPE_UNSPECIFIED: _ClassVar[VariableType]
    VARIABLE_TYPE_STRING: _ClassVar[VariableType]
    VARIABLE_TYPE_INTEGER: _ClassVar[VariableType]
    VARIABLE_TYPE_NUMBER: _ClassVar[VariableType]
    VARIABLE_TYPE_BOOLEAN: _ClassVar[VariableType]
    VARIABLE_TYPE_ENUM: _ClassVar[VariableType]
    VARIABLE_TYPE_ARRAY: _ClassVar[VariableType]
    VARIABLE_TYPE_OBJECT: _ClassVar[VariableType]

class ValidationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALIDATION_MODE_UNSPECIFIED: _ClassVar[ValidationMode]
    VALIDATION_MODE_BASIC: _ClassVar[ValidationMode]
    VALIDATION_MODE_CUSTOM: _ClassVar[ValidationMode]

class IoMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IO_MODE_UNSPECIFIED: _ClassVar[IoMode]
    IO_MODE_UNSTRUCTURED: _ClassVar[IoMode]
    IO_MODE_STRUCTURED: _ClassVar[IoMode]
PROMPT_TYPE_UNSPECIFIED: PromptType
PROMPT_TYPE_SIMPLE: PromptType
VARIABLE_TYPE_UNSPECIFIED: VariableType
VARIABLE_TYPE_STRING: VariableType
VARIABLE_TYPE_INTEGER: VariableType
VARIABLE_TYPE_NUMBER: VariableType
VARIABLE_TYPE_BOOLEAN: VariableType
VARIABLE_TYPE_ENUM: VariableType
VARIABLE_TYPE_ARRAY: VariableType
VARIABLE_TYPE_OBJECT: VariableType
VALIDATION_MODE_UNSPECIFIED: ValidationMode
VALIDATION_MODE_BASIC: ValidationMode
VALIDATION_MODE_CUSTOM: ValidationMode
IO_MODE_UNSPECIFIED: IoMode
IO_MODE_UNSTRUCTURED: IoMode
IO_MODE_STRUCTURED: IoMode

class Prompt(_message.Message):
    __slots__ = ("id", "project_id", "name", "description", "latest_version", "create_time", "type", "default_label", "update_time", "labels")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LABEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    name: str
    description: str
    latest_version: int
    create_time: _timestamp_pb2.Timestamp
    type: PromptType
    default_label: str
    update_time: _timestamp_pb2.Timestamp
    labels: _containers.RepeatedCompositeFieldContainer[PromptLabel]
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., latest_version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[_Union[PromptType, str]] = ..., default_label: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Iterable[_Union[PromptLabel, _Mapping]]] = ...) -> None: ...

class PromptLabel(_message.Message):
    __slots__ = ("name", "version", "update_time", "update_user_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_USER_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    update_time: _timestamp_pb2.Timestamp
    update_user_id: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_user_id: _Optional[str] = ...) -> None: ...

class PromptLabelChange(_message.Message):
    __slots__ = ("label", "from_version", "to_version", "user_id", "time")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    label: str
    from_version: int
    to_version: int
    user_id: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, label: _Optional[str] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., user_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModelParameters(_message.Message):
    __slots__ = ("temperature", "max_tokens", "top_p", "frequency_penalty", "presence_penalty", "stop", "seed", "top_k", "min_p", "repetition_penalty", "extra")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_P_FIELD_NUMBER: _ClassVar[int]
    REPETITION_PENALTY_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    max_tokens: int
    top_p: float
    frequency_penalty: float
    presence_penalty: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    top_k: int
    min_p: float
    repetition_penalty: float
    extra: str
    def __init__(self, temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., top_p: _Optional[float] = ..., frequency_penalty: _Optional[float] = ..., presence_penalty: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., top_k: _Optional[int] = ..., min_p: _Optional[float] = ..., repetition_penalty: _Optional[float] = ..., extra: _Optional[str] = ...) -> None: ...

class Constraints(_message.Message):
    __slots__ = ("min_length", "max_length", "pattern", "ge", "gt", "le", "lt", "multiple_of", "min_items", "max_items", "enum_values")
    MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    GE_FIELD_NUMBER: _ClassVar[int]
    GT_FIELD_NUMBER: _ClassVar[int]
    LE_FIELD_NUMBER: _ClassVar[int]
    LT_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_OF_FIELD_NUMBER: _ClassVar[int]
    MIN_ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    ENUM_VALUES_FIELD_NUMBER: _ClassVar[int]
    min_length: int
    max_length: int
    pattern: str
    ge: float
    gt: float
    le: float
    lt: float
    multiple_of: float
    min_items: int
    max_items: int
    enum_values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, min_length: _Optional[int] = ..., max_length: _Optional[int] = ..., pattern: _Optional[str] = ..., ge: _Optional[float] = ..., gt: _Optional[float] = ..., le: _Optional[float] = ..., lt: _Optional[float] = ..., multiple_of: _Optional[float] = ..., min_items: _Optional[int] = ..., max_items: _Optional[int] = ..., enum_values: _Optional[_Iterable[str]] = ...) -> None: ...

class Variable(_message.Message):
    __slots__ = ("name", "description", "type", "options", "items", "fields", "default", "validation", "constraints", "rule")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    type: VariableType
    options: _containers.RepeatedScalarFieldContainer[str]
    items: Variable
    fields: _containers.RepeatedCompositeFieldContainer[Variable]
    default: str
    validation: ValidationMode
    constraints: Constraints
    rule: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., type: _Optional[_Union[VariableType, str]] = ..., options: _Optional[_Iterable[str]] = ..., items: _Optional[_Union[Variable, _Mapping]] = ..., fields: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ..., default: _Optional[str] = ..., validation: _Optional[_Union[ValidationMode, str]] = ..., constraints: _Optional[_Union[Constraints, _Mapping]] = ..., rule: _Optional[str] = ...) -> None: ...

class PromptIo(_message.Message):
    __slots__ = ("mode", "variables", "rule", "validation")
    MODE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    mode: IoMode
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    rule: str
    validation: str
    def __init__(self, mode: _Optional[_Union[IoMode, str]] = ..., variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ..., rule: _Optional[str] = ..., validation: _Optional[str] = ...) -> None: ...

class IntegrationTool(_message.Message):
    __slots__ = ("integration", "active", "access_keys")
    class AccessKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INTEGRATION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_KEYS_FIELD_NUMBER: _ClassVar[int]
    integration: str
    active: bool
    access_keys: _containers.ScalarMap[str, str]
    def __init__(self, integration: _Optional[str] = ..., active: _Optional[bool] = ..., access_keys: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PromptWarning(_message.Message):
    __slots__ = ("field", "message")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    field: str
    message: str
    def __init__(self, field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class PromptMessage(_message.Message):
    __slots__ = ("role", "template")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    role: str
    template: str
    def __init__(self, role: _Optional[str] = ..., template: _Optional[str] = ...) -> None: ...

class PromptVersion(_message.Message):
    __slots__ = ("prompt_id", "version", "model", "messages", "input_schema", "output_schema", "temperature", "max_tokens", "tools", "max_repair_attempts", "create_time", "note", "deployment_id", "system_prompt", "parameters", "input", "output", "integration_tools", "allow_multiple_calls", "create_user_id", "labels")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPAIR_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_TOOLS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MULTIPLE_CALLS_FIELD_NUMBER: _ClassVar[int]
    CREATE_USER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    version: int
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[PromptMessage]
    input_schema: str
    output_schema: str
    temperature: float
    max_tokens: int
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    max_repair_attempts: int
    create_time: _timestamp_pb2.Timestamp
    note: str
    deployment_id: str
    system_prompt: str
    parameters: ModelParameters
    input: PromptIo
    output: PromptIo
    integration_tools: _containers.RepeatedCompositeFieldContainer[IntegrationTool]
    allow_multiple_calls: bool
    create_user_id: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prompt_id: _Optional[str] = ..., version: _Optional[int] = ..., model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[PromptMessage, _Mapping]]] = ..., input_schema: _Optional[str] = ..., output_schema: _Optional[str] = ..., temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., max_repair_attempts: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ..., deployment_id: _Optional[str] = ..., system_prompt: _Optional[str] = ..., parameters: _Optional[_Union[ModelParameters, _Mapping]] = ..., input: _Optional[_Union[PromptIo, _Mapping]] = ..., output: _Optional[_Union[PromptIo, _Mapping]] = ..., integration_tools: _Optional[_Iterable[_Union[IntegrationTool, _Mapping]]] = ..., allow_multiple_calls: _Optional[bool] = ..., create_user_id: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class CreatePromptRequest(_message.Message):
    __slots__ = ("project_id", "name", "description", "version", "type", "default_label", "labels")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LABEL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    description: str
    version: PromptVersion
    type: PromptType
    default_label: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., version: _Optional[_Union[PromptVersion, _Mapping]] = ..., type: _Optional[_Union[PromptType, str]] = ..., default_label: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class CreatePromptResponse(_message.Message):
    __slots__ = ("prompt", "version", "warnings")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    version: PromptVersion
    warnings: _containers.RepeatedCompositeFieldContainer[PromptWarning]
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ..., version: _Optional[_Union[PromptVersion, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[PromptWarning, _Mapping]]] = ...) -> None: ...

class GetPromptRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ...) -> None: ...

class GetPromptResponse(_message.Message):
    __slots__ = ("prompt",)
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ...) -> None: ...

class ListPromptsRequest(_message.Message):
    __slots__ = ("project_id", "page_size", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    page_size: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPromptsResponse(_message.Message):
    __slots__ = ("prompts", "next_page_token")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedCompositeFieldContainer[Prompt]
    next_page_token: str
    def __init__(self, prompts: _Optional[_Iterable[_Union[Prompt, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeletePromptRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "force")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    force: bool
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeletePromptResponse(_message.Message):
    __slots__ = ("deleted_deployment_ids",)
    DELETED_DEPLOYMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    deleted_deployment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted_deployment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CreatePromptVersionRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "version", "expected_version", "labels")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    version: PromptVersion
    expected_version: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., version: _Optional[_Union[PromptVersion, _Mapping]] = ..., expected_version: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class CreatePromptVersionResponse(_message.Message):
    __slots__ = ("version", "warnings")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    version: PromptVersion
    warnings: _containers.RepeatedCompositeFieldContainer[PromptWarning]
    def __init__(self, version: _Optional[_Union[PromptVersion, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[PromptWarning, _Mapping]]] = ...) -> None: ...

class GetPromptVersionRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "version", "label")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    version: int
    label: str
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class GetPromptVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: PromptVersion
    def __init__(self, version: _Optional[_Union[PromptVersion, _Mapping]] = ...) -> None: ...

class ListPromptVersionsRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "page_size", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    page_size: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPromptVersionsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[PromptVersion]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[PromptVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdatePromptRequest(_message.Message):
    __slots__ = ("prompt", "update_mask")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdatePromptResponse(_message.Message):
    __slots__ = ("prompt",)
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ...) -> None: ...

class ListAllPromptsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAllPromptsResponse(_message.Message):
    __slots__ = ("prompts", "next_page_token")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedCompositeFieldContainer[Prompt]
    next_page_token: str
    def __init__(self, prompts: _Optional[_Iterable[_Union[Prompt, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetPromptLabelRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "label", "version", "expected_version")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    label: str
    version: int
    expected_version: int
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., label: _Optional[str] = ..., version: _Optional[int] = ..., expected_version: _Optional[int] = ...) -> None: ...

class SetPromptLabelResponse(_message.Message):
    __slots__ = ("label",)
    LABEL_FIELD_NUMBER: _ClassVar[int]
    label: PromptLabel
    def __init__(self, label: _Optional[_Union[PromptLabel, _Mapping]] = ...) -> None: ...

class GetPromptLabelRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "label")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    label: str
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class GetPromptLabelResponse(_message.Message):
    __slots__ = ("label", "version")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    label: PromptLabel
    version: PromptVersion
    def __init__(self, label: _Optional[_Union[PromptLabel, _Mapping]] = ..., version: _Optional[_Union[PromptVersion, _Mapping]] = ...) -> None: ...

class DeletePromptLabelRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "label")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    label: str
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class DeletePromptLabelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPromptLabelsRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ...) -> None: ...

class ListPromptLabelsResponse(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[PromptLabel]
    def __init__(self, labels: _Optional[_Iterable[_Union[PromptLabel, _Mapping]]] = ...) -> None: ...

class ListPromptLabelChangesRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "label", "page_size", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    label: str
    page_size: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., label: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPromptLabelChangesResponse(_message.Message):
    __slots__ = ("changes", "next_page_token")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[PromptLabelChange]
    next_page_token: str
    def __init__(self, changes: _Optional[_Iterable[_Union[PromptLabelChange, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DiffPromptVersionsRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "version", "other")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    version: int
    other: int
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., version: _Optional[int] = ..., other: _Optional[int] = ...) -> None: ...

class PromptFieldChange(_message.Message):
    __slots__ = ("field", "before", "after")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    field: str
    before: str
    after: str
    def __init__(self, field: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ...) -> None: ...

class DiffPromptVersionsResponse(_message.Message):
    __slots__ = ("changes", "template_diff")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_DIFF_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[PromptFieldChange]
    template_diff: str
    def __init__(self, changes: _Optional[_Iterable[_Union[PromptFieldChange, _Mapping]]] = ..., template_diff: _Optional[str] = ...) -> None: ...

class WatchPromptsRequest(_message.Message):
    __slots__ = ("since_revision", "watcher_id", "include_access_keys")
    SINCE_REVISION_FIELD_NUMBER: _ClassVar[int]
    WATCHER_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ACCESS_KEYS_FIELD_NUMBER: _ClassVar[int]
    since_revision: int
    watcher_id: str
    include_access_keys: bool
    def __init__(self, since_revision: _Optional[int] = ..., watcher_id: _Optional[str] = ..., include_access_keys: _Optional[bool] = ...) -> None: ...

class PromptSnapshot(_message.Message):
    __slots__ = ("prompt", "versions")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    versions: _containers.RepeatedCompositeFieldContainer[PromptVersion]
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ..., versions: _Optional[_Iterable[_Union[PromptVersion, _Mapping]]] = ...) -> None: ...

class WatchPromptsResponse(_message.Message):
    __slots__ = ("revision", "reset", "upsert_prompts", "delete_prompt_ids")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    UPSERT_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    DELETE_PROMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    reset: bool
    upsert_prompts: _containers.RepeatedCompositeFieldContainer[PromptSnapshot]
    delete_prompt_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[int] = ..., reset: _Optional[bool] = ..., upsert_prompts: _Optional[_Iterable[_Union[PromptSnapshot, _Mapping]]] = ..., delete_prompt_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ExecutePromptRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "version", "inputs", "stream", "request", "deployment")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    version: int
    inputs: str
    stream: bool
    request: _response_pb2.ResponseRequest
    deployment: PromptDeploymentRef
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., version: _Optional[int] = ..., inputs: _Optional[str] = ..., stream: _Optional[bool] = ..., request: _Optional[_Union[_response_pb2.ResponseRequest, _Mapping]] = ..., deployment: _Optional[_Union[PromptDeploymentRef, _Mapping]] = ...) -> None: ...

class PromptDeploymentRef(_message.Message):
    __slots__ = ("deployment_id", "prompt_id", "version", "label")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    prompt_id: str
    version: int
    label: str
    def __init__(self, deployment_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class ExecutePromptResponse(_message.Message):
    __slots__ = ("text", "output", "model_calls", "usage", "response", "model_request")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    text: str
    output: str
    model_calls: int
    usage: _common_pb2.Usage
    response: _response_pb2.Response
    model_request: _response_pb2.ResponseRequest
    def __init__(self, text: _Optional[str] = ..., output: _Optional[str] = ..., model_calls: _Optional[int] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., response: _Optional[_Union[_response_pb2.Response, _Mapping]] = ..., model_request: _Optional[_Union[_response_pb2.ResponseRequest, _Mapping]] = ...) -> None: ...

class StreamExecutePromptRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "version", "inputs", "stream", "request", "deployment")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    version: int
    inputs: str
    stream: bool
    request: _response_pb2.ResponseRequest
    deployment: PromptDeploymentRef
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., version: _Optional[int] = ..., inputs: _Optional[str] = ..., stream: _Optional[bool] = ..., request: _Optional[_Union[_response_pb2.ResponseRequest, _Mapping]] = ..., deployment: _Optional[_Union[PromptDeploymentRef, _Mapping]] = ...) -> None: ...

class StreamExecutePromptResponse(_message.Message):
    __slots__ = ("delta", "usage", "event", "model_request")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    delta: str
    usage: _common_pb2.Usage
    event: _response_pb2.ResponseStreamEvent
    model_request: _response_pb2.ResponseRequest
    def __init__(self, delta: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., event: _Optional[_Union[_response_pb2.ResponseStreamEvent, _Mapping]] = ..., model_request: _Optional[_Union[_response_pb2.ResponseRequest, _Mapping]] = ...) -> None: ...

class FetchPromptVersionRequest(_message.Message):
    __slots__ = ("prompt_id", "version")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    version: int
    def __init__(self, prompt_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class FetchPromptVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: PromptVersion
    def __init__(self, version: _Optional[_Union[PromptVersion, _Mapping]] = ...) -> None: ...

class RunPromptRequest(_message.Message):
    __slots__ = ("project_id", "version", "variables", "stream")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    version: PromptVersion
    variables: str
    stream: bool
    def __init__(self, project_id: _Optional[str] = ..., version: _Optional[_Union[PromptVersion, _Mapping]] = ..., variables: _Optional[str] = ..., stream: _Optional[bool] = ...) -> None: ...

class RunPromptVersionRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "version", "variables")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    version: str
    variables: str
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., version: _Optional[str] = ..., variables: _Optional[str] = ...) -> None: ...

class PromptRun(_message.Message):
    __slots__ = ("text", "output", "model_calls", "usage", "response", "version", "cost_usd")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    text: str
    output: str
    model_calls: int
    usage: _common_pb2.Usage
    response: _response_pb2.Response
    version: int
    cost_usd: str
    def __init__(self, text: _Optional[str] = ..., output: _Optional[str] = ..., model_calls: _Optional[int] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., response: _Optional[_Union[_response_pb2.Response, _Mapping]] = ..., version: _Optional[int] = ..., cost_usd: _Optional[str] = ...) -> None: ...

class StreamRunPromptRequest(_message.Message):
    __slots__ = ("project_id", "version", "variables", "stream")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    version: PromptVersion
    variables: str
    stream: bool
    def __init__(self, project_id: _Optional[str] = ..., version: _Optional[_Union[PromptVersion, _Mapping]] = ..., variables: _Optional[str] = ..., stream: _Optional[bool] = ...) -> None: ...

class StreamRunPromptBodyRequest(_message.Message):
    __slots__ = ("project_id", "version", "variables", "user_id", "prompt_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    version: PromptVersion
    variables: str
    user_id: str
    prompt_id: str
    def __init__(self, project_id: _Optional[str] = ..., version: _Optional[_Union[PromptVersion, _Mapping]] = ..., variables: _Optional[str] = ..., user_id: _Optional[str] = ..., prompt_id: _Optional[str] = ...) -> None: ...

class StreamRunPromptBodyResponse(_message.Message):
    __slots__ = ("type", "delta", "run")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    type: str
    delta: str
    run: PromptRun
    def __init__(self, type: _Optional[str] = ..., delta: _Optional[str] = ..., run: _Optional[_Union[PromptRun, _Mapping]] = ...) -> None: ...

class StreamRunPromptResponse(_message.Message):
    __slots__ = ("type", "delta", "run")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    type: str
    delta: str
    run: PromptRun
    def __init__(self, type: _Optional[str] = ..., delta: _Optional[str] = ..., run: _Optional[_Union[PromptRun, _Mapping]] = ...) -> None: ...

class RunPromptResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: PromptRun
    def __init__(self, run: _Optional[_Union[PromptRun, _Mapping]] = ...) -> None: ...

class RunPromptVersionResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: PromptRun
    def __init__(self, run: _Optional[_Union[PromptRun, _Mapping]] = ...) -> None: ...

class RunPromptBodyResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: PromptRun
    def __init__(self, run: _Optional[_Union[PromptRun, _Mapping]] = ...) -> None: ...

class RunPromptBodyRequest(_message.Message):
    __slots__ = ("project_id", "version", "variables", "user_id", "prompt_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    version: PromptVersion
    variables: str
    user_id: str
    prompt_id: str
    def __init__(self, project_id: _Optional[str] = ..., version: _Optional[_Union[PromptVersion, _Mapping]] = ..., variables: _Optional[str] = ..., user_id: _Optional[str] = ..., prompt_id: _Optional[str] = ...) -> None: ...

class GenerateValidationRequest(_message.Message):
    __slots__ = ("project_id", "prompt_id", "rule", "model", "version")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prompt_id: str
    rule: str
    model: str
    version: str
    def __init__(self, project_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., rule: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GenerateValidationDocumentRequest(_message.Message):
    __slots__ = ("project_id", "rule", "model", "version", "user_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    rule: str
    model: str
    version: PromptVersion
    user_id: str
    def __init__(self, project_id: _Optional[str] = ..., rule: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[_Union[PromptVersion, _Mapping]] = ..., user_id: _Optional[str] = ...) -> None: ...

class GenerateValidationResponse(_message.Message):
    __slots__ = ("validation", "model_calls", "usage")
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    validation: str
    model_calls: int
    usage: _common_pb2.Usage
    def __init__(self, validation: _Optional[str] = ..., model_calls: _Optional[int] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class GenerateValidationDocumentResponse(_message.Message):
    __slots__ = ("validation", "model_calls", "usage")
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    validation: str
    model_calls: int
    usage: _common_pb2.Usage
    def __init__(self, validation: _Optional[str] = ..., model_calls: _Optional[int] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class ListPromptIntegrationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPromptIntegrationsResponse(_message.Message):
    __slots__ = ("integrations",)
    INTEGRATIONS_FIELD_NUMBER: _ClassVar[int]
    integrations: _containers.RepeatedCompositeFieldContainer[PromptIntegration]
    def __init__(self, integrations: _Optional[_Iterable[_Union[PromptIntegration, _Mapping]]] = ...) -> None: ...

class PromptIntegration(_message.Message):
    __slots__ = ("name", "display_name", "description", "credentials", "functions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    credentials: _containers.RepeatedCompositeFieldContainer[PromptIntegrationCredential]
    functions: _containers.RepeatedCompositeFieldContainer[PromptIntegrationFunction]
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., credentials: _Optional[_Iterable[_Union[PromptIntegrationCredential, _Mapping]]] = ..., functions: _Optional[_Iterable[_Union[PromptIntegrationFunction, _Mapping]]] = ...) -> None: ...

class PromptIntegrationCredential(_message.Message):
    __slots__ = ("name", "display_name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class PromptIntegrationFunction(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...
