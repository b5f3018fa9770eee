"""`app.validation.check_update_mask`, the one validator of the Update RPCs' field masks."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from app.validation import check_update_mask
from bud.app.v1 import deployment_pb2, project_pb2
from bud.auth.v1 import auth_pb2
from budrt.errors import ServiceError

KEY_FIELDS = ("name", "deployment_ids", "expire_time", "requests_per_minute", "tokens_per_minute")
DEPLOYMENT_FIELDS = ("name", "model", "endpoints", "rate_limits")


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def test_an_empty_mask_means_every_writable_field() -> None:
    assert check_update_mask(_mask(), auth_pb2.ApiKey.DESCRIPTOR, KEY_FIELDS) == list(KEY_FIELDS)


def test_paths_are_kept_once_in_order() -> None:
    paths = check_update_mask(
        _mask("tokens_per_minute", "name", "tokens_per_minute"), auth_pb2.ApiKey.DESCRIPTOR, KEY_FIELDS
    )
    assert paths == ["tokens_per_minute", "name"]


@pytest.mark.parametrize(
    ("message", "writable", "paths", "nested", "names"),
    [
        (
            auth_pb2.ApiKey,
            KEY_FIELDS,
            ("prefix",),
            False,
            "'prefix' cannot be updated",
        ),  # a field, not writable
        (auth_pb2.ApiKey, KEY_FIELDS, ("no_such_field",), False, "unknown fields: no_such_field"),
        (auth_pb2.ApiKey, KEY_FIELDS, ("expire_time.seconds",), False, "'expire_time.seconds' cannot be"),
        (
            project_pb2.Project,
            ("name", "description"),
            ("name", "create_time", "id"),
            False,
            "'create_time', 'id' cannot be updated (writable: name, description)",
        ),
        (deployment_pb2.Deployment, DEPLOYMENT_FIELDS, ("status",), True, "'status' cannot be updated"),
        (deployment_pb2.Deployment, DEPLOYMENT_FIELDS, ("rate_limits.nope",), True, "unknown fields"),
    ],
)
def test_refused(
    message: type, writable: tuple[str, ...], paths: tuple[str, ...], nested: bool, names: str
) -> None:
    with pytest.raises(ServiceError) as refused:
        check_update_mask(_mask(*paths), message.DESCRIPTOR, writable, nested=nested)
    assert (refused.value.code, refused.value.param) == (grpc.StatusCode.INVALID_ARGUMENT, "update_mask")
    assert names in refused.value.message


def test_nested_paths_into_writable_fields_only_when_allowed() -> None:
    paths = ("rate_limits.requests_per_minute", "name")
    assert check_update_mask(
        _mask(*paths), deployment_pb2.Deployment.DESCRIPTOR, DEPLOYMENT_FIELDS, nested=True
    ) == list(paths)
    with pytest.raises(ServiceError):
        check_update_mask(_mask(*paths), deployment_pb2.Deployment.DESCRIPTOR, DEPLOYMENT_FIELDS)
