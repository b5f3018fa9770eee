"""Request validation shared by the servicers and the bootstrap. Every check raises
`budrt.errors.ServiceError` (INVALID_ARGUMENT with the offending field in `param`, or
UNIMPLEMENTED for what this version does not support yet; PERMISSION_DENIED from
:func:`check_path_arguments`, the one rule that depends on who asks)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from google.protobuf import descriptor, field_mask_pb2

from app.images import ImageDefaults, check_image, check_runner_matches
from bud.app.v1 import deployment_pb2, engine_registry_pb2
from bud.engine.v1 import engine_service_pb2
from budrt.builtin_models import BUILTIN_MODELS, builtin_names
from budrt.errors import echo, invalid_argument, permission_denied

# Name lengths (the patterns below say the same; checked first, so an over-long name is refused
# without being matched or quoted).
MAX_PROJECT_NAME = 100
MAX_USERNAME = 100
MAX_DEPLOYMENT_NAME = 128
PROJECT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Lower case only, so that "Alice" and "alice" cannot be two users; e-mail addresses fit.
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,99}$")
# What callers put in `model`: also allows "org/model", "model:tag" and "name@version" styles.
DEPLOYMENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")
ENGINE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
ENGINE_ID_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# A registry model id ("rm_" and 24 hex digits; the registry answers whether it exists).
ID_SHAPE_RE = re.compile(r"^[a-z]{1,8}_[0-9a-f]{24}$")
HUGGING_FACE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9_.-]{1,96})?$")
HOST_PORT_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}):(\d{1,5})$")
DTYPES = frozenset({"auto", "float32", "bfloat16", "float16"})
MAX_DESCRIPTION = 2000
MAX_KEY_NAME = 200
MAX_KEY_DEPLOYMENTS = 1000
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_DISPLAY_NAME = 200
# A path on an engine's machine (Linux's PATH_MAX); a path with a NUL character is refused.
MAX_PATH_CHARS = 4096
# vLLM's executors a deployment may ask for: processes on the engine's machine, or its Ray cluster.
EXECUTOR_BACKENDS = frozenset({"mp", "ray"})
# An inline chat template (`engine_args.chat_template`), in bytes of UTF-8: real models' templates
# are a few KiB, the longest about 20 KiB.
MAX_CHAT_TEMPLATE_BYTES = 64 * 1024
# What makes a chat template Jinja text rather than a file name or the name of a vLLM template.
JINJA_MARKERS = ("{{", "{%")


def require(value: str, param: str) -> str:
    """`value`, refused when empty."""
    if not value:
        raise invalid_argument(f"{param} is required", param=param)
    return value


def check_update_mask(
    mask: field_mask_pb2.FieldMask,
    message_type: descriptor.Descriptor,
    writable: Sequence[str],
    *,
    nested: bool = False,
) -> list[str]:
    """The paths an Update RPC changes: those `mask` names (each once), or every `writable` field
    when it names none. INVALID_ARGUMENT (param ``update_mask``) when a path is not a field of
    `message_type`, or not a writable one. With `nested`, a path into a writable field (such as
    ``rate_limits.requests_per_minute``) is writable too."""
    if not mask.IsValidForDescriptor(message_type):
        raise invalid_argument(
            f"update_mask names unknown fields: {', '.join(mask.paths)}", param="update_mask"
        )
    paths = list(dict.fromkeys(mask.paths)) or list(writable)
    unwritable = [p for p in paths if (p.split(".", 1)[0] if nested else p) not in writable]
    if unwritable:
        raise invalid_argument(
            f"update_mask: {', '.join(map(repr, unwritable))} cannot be updated "
            f"(writable: {', '.join(writable)})",
            param="update_mask",
        )
    return paths


def _check_name(
    value: str, param: str, pattern: re.Pattern[str], kind: str, allowed: str, max_length: int
) -> None:
    """A required name of at most `max_length` characters that `pattern` matches; the error names
    the `kind` of name and what is `allowed` (all names start with a letter or digit). An
    over-long name is refused first, without quoting it."""
    require(value, param)
    if len(value) > max_length:
        raise invalid_argument(f"{param} is longer than {max_length} characters", param=param)
    if not pattern.match(value):
        raise invalid_argument(
            f"invalid {kind} {echo(value)}: use {allowed}, starting with a letter or digit", param=param
        )


def check_project_name(name: str, param: str) -> None:
    """Project names: 1-100 of letters, digits, '.', '_', '-', starting alphanumeric."""
    _check_name(
        name,
        param,
        PROJECT_NAME_RE,
        "project name",
        "up to 100 letters, digits, '.', '_' or '-'",
        MAX_PROJECT_NAME,
    )


def check_username(username: str, param: str) -> None:
    """Usernames: 1-100 of lower-case letters, digits, '.', '_', '@', '+', '-', starting with a
    letter or digit."""
    _check_name(
        username,
        param,
        USERNAME_RE,
        "username",
        "up to 100 lower-case letters, digits or '._@+-'",
        MAX_USERNAME,
    )


def check_password(password: str, param: str) -> None:
    """Passwords: 8 to 1024 characters."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise invalid_argument(
            f"{param} must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long", param=param
        )


def check_display_name(display_name: str, param: str) -> None:
    """Display names: at most 200 characters."""
    if len(display_name) > MAX_DISPLAY_NAME:
        raise invalid_argument(f"{param} is longer than {MAX_DISPLAY_NAME} characters", param=param)


def check_description(description: str, param: str) -> None:
    """Descriptions: at most 2000 characters."""
    if len(description) > MAX_DESCRIPTION:
        raise invalid_argument(f"{param} is longer than {MAX_DESCRIPTION} characters", param=param)


def check_deployment_name(name: str, param: str) -> None:
    """Deployment names (the `model` callers send)."""
    _check_name(
        name,
        param,
        DEPLOYMENT_NAME_RE,
        "deployment name",
        "up to 128 letters, digits or '._:/@+-'",
        MAX_DEPLOYMENT_NAME,
    )


def check_address(address: str, param: str) -> None:
    """An engine address, host:port."""
    require(address, param)
    match = HOST_PORT_RE.match(address)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise invalid_argument(f"invalid engine address {echo(address)}: expected host:port", param=param)


def check_model_source(source: deployment_pb2.ModelSource, param: str) -> tuple[str, str]:
    """The (oneof field, value) of a model source, validated."""
    kind = source.WhichOneof("source")
    if kind is None:
        raise invalid_argument(f"{param} needs one of builtin, hugging_face_id or local_path", param=param)
    value: str = getattr(source, kind)
    field = f"{param}.{kind}"
    require(value, field)
    if kind == "builtin" and value not in BUILTIN_MODELS:
        raise invalid_argument(
            f"unknown builtin model {echo(value)}; builtin models: {builtin_names()}",
            param=field,
        )
    if kind == "hugging_face_id" and not is_hugging_face_id(value):
        raise invalid_argument(
            f"invalid Hugging Face id {echo(value)}: expected name or org/name", param=field
        )
    if kind == "local_path":
        check_engine_path(value, field)
    if kind == "registry_model_id" and not ID_SHAPE_RE.match(value):
        raise invalid_argument(f"invalid registry model id {echo(value)}", param=field)
    return kind, value


def check_engine_args(args: engine_service_pb2.EngineArgs, param: str) -> None:
    """Ranges of the engine arguments that are set."""

    def positive(field: str) -> None:
        if args.HasField(field) and getattr(args, field) <= 0:
            raise invalid_argument(f"{param}.{field} must be positive", param=f"{param}.{field}")

    for field in (
        "max_model_len",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "max_num_seqs",
        "kv_cache_space_gib",
    ):
        positive(field)
    backend = args.distributed_executor_backend
    if args.HasField("distributed_executor_backend") and backend not in EXECUTOR_BACKENDS:
        raise invalid_argument(
            f"{param}.distributed_executor_backend must be one of {', '.join(sorted(EXECUTOR_BACKENDS))}",
            param=f"{param}.distributed_executor_backend",
        )
    if args.HasField("kv_cache_space_gib") and not math.isfinite(args.kv_cache_space_gib):
        raise invalid_argument(
            f"{param}.kv_cache_space_gib must be finite", param=f"{param}.kv_cache_space_gib"
        )
    if args.HasField("gpu_memory_utilization") and not 0 < args.gpu_memory_utilization <= 1:
        raise invalid_argument(
            f"{param}.gpu_memory_utilization must be in (0, 1]", param=f"{param}.gpu_memory_utilization"
        )
    if args.HasField("dtype") and args.dtype not in DTYPES:
        raise invalid_argument(
            f"{param}.dtype must be one of {', '.join(sorted(DTYPES))}", param=f"{param}.dtype"
        )
    if args.HasField("tokenizer") and not is_hugging_face_id(args.tokenizer):
        check_engine_path(args.tokenizer, f"{param}.tokenizer", "a Hugging Face id (name or org/name) or ")
    if args.HasField("chat_template"):
        check_chat_template(args.chat_template, f"{param}.chat_template")


def is_hugging_face_id(value: str) -> bool:
    """Whether `value` is a Hugging Face repository id (`name`, `org/name`; no "..")."""
    return HUGGING_FACE_ID_RE.match(value) is not None and ".." not in value


def check_engine_path(value: str, param: str, alternative: str = "") -> None:
    """An absolute path on an engine's machine, of at most `MAX_PATH_CHARS` characters and no NUL
    (where it may lie is the engine's rule: its model roots)."""
    if not value.startswith("/") or "\0" in value or len(value) > MAX_PATH_CHARS:
        raise invalid_argument(
            f"{param} must be {alternative}an absolute path on the engine's machine: {echo(value)}",
            param=param,
        )


def check_chat_template(text: str, param: str) -> None:
    """A chat template is its Jinja text (never a path: engines do not open one), at most
    `MAX_CHAT_TEMPLATE_BYTES` bytes of UTF-8, without NUL characters."""
    if len(text.encode()) > MAX_CHAT_TEMPLATE_BYTES:
        raise invalid_argument(f"{param} is longer than {MAX_CHAT_TEMPLATE_BYTES} bytes", param=param)
    if "\0" in text or not any(marker in text for marker in JINJA_MARKERS):
        raise invalid_argument(
            f"{param} must be the template's Jinja text (with {{{{ }}}} or {{% %}} tags), not a path "
            "or a template's name",
            param=param,
        )


def path_arguments(deployment: deployment_pb2.Deployment, param: str) -> dict[str, str]:
    """The deployment's arguments that name files on an engine's machine, by field path: a
    `model.local_path`, an `engine_args.tokenizer` that is not a Hugging Face id."""
    found = {}
    if deployment.HasField("model") and deployment.model.WhichOneof("source") == "local_path":
        found[f"{param}.model.local_path"] = deployment.model.local_path
    tokenizer = deployment.engine_args.tokenizer
    if deployment.engine_args.HasField("tokenizer") and not is_hugging_face_id(tokenizer):
        found[f"{param}.engine_args.tokenizer"] = tokenizer
    return found


def check_path_arguments(
    deployment: deployment_pb2.Deployment,
    admin: bool,
    param: str = "deployment",
    before: deployment_pb2.Deployment | None = None,
) -> None:
    """Path-valued arguments (:func:`path_arguments`) are for platform admins: anyone else gets
    PERMISSION_DENIED naming the field. On an update, `before` is the stored deployment: a path it
    already has (an admin set it) may stay while an editor changes other fields."""
    if admin:
        return
    kept = path_arguments(before, param) if before is not None else {}
    for field, value in path_arguments(deployment, param).items():
        if kept.get(field) != value:
            raise permission_denied(
                f"{field}: only platform admins may name a path on the engine's machine; use a "
                "builtin model or a Hugging Face id",
                param=field,
            )


def check_endpoints(
    endpoints: list[deployment_pb2.EngineEndpoint],
    param: str,
    assigned: Sequence[deployment_pb2.EngineEndpoint] = (),
) -> list[str]:
    """The registered engines a deployment's endpoints name, in order (none: the platform places
    it). Each endpoint names its engine by `engine_id`, once; `address` and `served_model_name`
    are the platform's: refused unless they are what the platform `assigned` to that engine's
    endpoint (a read-modify-write sends them back unchanged). Whether the engines exist is
    checked by the placement."""
    given = {e.engine_id: e for e in assigned}
    engine_ids: list[str] = []
    for i, endpoint in enumerate(endpoints):
        where = f"{param}[{i}]"
        engine_id = endpoint.engine_id
        platform = given.get(engine_id, deployment_pb2.EngineEndpoint()) if engine_id else None
        for field in ("address", "served_model_name"):
            value = getattr(endpoint, field)
            if value and (platform is None or value != getattr(platform, field)):
                raise invalid_argument(
                    f"{where}.{field} is set by the platform: name a registered engine by engine_id, "
                    "or give no endpoints to let the platform place the deployment",
                    param=f"{where}.{field}",
                )
        require(engine_id, f"{where}.engine_id")
        if not ENGINE_ID_RE.match(engine_id):
            raise invalid_argument(f"unknown engine {echo(engine_id)}", param=f"{where}.engine_id")
        if engine_id in engine_ids:
            raise invalid_argument(f"engine {engine_id!r} is listed twice", param=f"{where}.engine_id")
        engine_ids.append(engine_id)
    return engine_ids


def check_engine(engine: engine_registry_pb2.Engine, param: str = "engine") -> None:
    """A registered engine's writable fields: name, address, capacity."""
    _check_name(
        engine.name,
        f"{param}.name",
        ENGINE_NAME_RE,
        "engine name",
        "up to 100 letters, digits or '._:-'",
        100,
    )
    check_address(engine.address, f"{param}.address")
    if engine.max_models < 0:
        raise invalid_argument(f"{param}.max_models must not be negative", param=f"{param}.max_models")


def check_deployment(
    deployment: deployment_pb2.Deployment,
    param: str = "deployment",
    image_defaults: ImageDefaults | None = None,
) -> tuple[str, str]:
    """Validates every writable field of a model deployment; returns the model source as (oneof
    field, value). Prompt deployments are checked by `app.prompts.deployments`, which the
    DeploymentService hands them to first. `image_defaults`: the platform's image settings, which
    an image deployment's `image` is checked against (`app.images`)."""
    check_deployment_name(deployment.name, f"{param}.name")
    target = deployment.WhichOneof("target")
    if target == "prompt":
        raise invalid_argument("a prompt deployment is not a model deployment", param=f"{param}.prompt")
    if target is None:
        raise invalid_argument(f"{param}.model is required", param=f"{param}.model")
    source = check_model_source(deployment.model, f"{param}.model")
    if deployment.runner not in engine_service_pb2.Runner.values():
        raise invalid_argument(f"unknown runner {deployment.runner}", param=f"{param}.runner")
    check_runner_matches(deployment, param)
    check_engine_args(deployment.engine_args, f"{param}.engine_args")
    check_scaling_and_limits(deployment, param)
    check_image(deployment, image_defaults or ImageDefaults(), param)
    return source


def check_scaling_and_limits(deployment: deployment_pb2.Deployment, param: str = "deployment") -> None:
    """The settings every deployment has, model or prompt: scaling bounds and rate limits (an
    images-per-minute limit is accepted on any deployment; only image deployments' is routed)."""
    scaling = deployment.scaling
    for field in ("min_concurrency", "max_concurrency"):
        if getattr(scaling, field) < 0:
            raise invalid_argument(
                f"{param}.scaling.{field} must not be negative", param=f"{param}.scaling.{field}"
            )
    for field in ("min_replicas", "max_replicas", "idle_timeout_seconds"):
        if scaling.HasField(field) and getattr(scaling, field) < 0:
            raise invalid_argument(
                f"{param}.scaling.{field} must not be negative", param=f"{param}.scaling.{field}"
            )
    if scaling.HasField("max_replicas") and scaling.max_replicas == 0:
        raise invalid_argument(
            f"{param}.scaling.max_replicas must be at least 1 (min_replicas 0 scales to zero)",
            param=f"{param}.scaling.max_replicas",
        )
    if (
        scaling.HasField("min_replicas")
        and scaling.HasField("max_replicas")
        and scaling.min_replicas > scaling.max_replicas
    ):
        raise invalid_argument(
            f"{param}.scaling.min_replicas is above max_replicas", param=f"{param}.scaling.min_replicas"
        )
    if scaling.max_concurrency and scaling.max_concurrency < scaling.min_concurrency:
        raise invalid_argument(
            f"{param}.scaling.max_concurrency is below min_concurrency",
            param=f"{param}.scaling.max_concurrency",
        )
    for field in ("requests_per_minute", "tokens_per_minute", "images_per_minute"):
        if getattr(deployment.rate_limits, field) < 0:
            raise invalid_argument(
                f"{param}.rate_limits.{field} must not be negative", param=f"{param}.rate_limits.{field}"
            )
