"""`app.convert`: one set of row → message conversions, for the management API and the routing
stream alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app import convert
from app.db import models
from bud.app.v1 import deployment_pb2
from bud.auth.v1 import auth_pb2, user_pb2
from bud.engine.v1 import engine_service_pb2

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _key(**fields: object) -> models.ApiKey:
    values: dict[str, object] = {
        "id": "key_1",
        "project_id": "prj_1",
        "name": "ci",
        "prefix": "abcdEFGH",
        "key_hash": b"h" * 32,
        "deployment_ids": ["dep_1"],
        "create_time": NOW,
        "expire_time": NOW + timedelta(days=1),
        "revoke_time": None,
        "last_used_time": None,
        "requests_per_minute": 60,
        "tokens_per_minute": 1000,
    }
    values.update(fields)
    return models.ApiKey(**values)


def _deployment(status: str) -> models.Deployment:
    row = models.Deployment(
        id="dep_1",
        project_id="prj_1",
        name="chat",
        model_source_kind="builtin",
        model_source="tiny-llama",
        prompt_id=None,
        prompt_version=None,
        runner="RUNNER_GENERATE",
        engine_args={},
        min_concurrency=1,
        max_concurrency=3,
        autoscale=False,
        caching=False,
        requests_per_minute=5,
        tokens_per_minute=7,
        status=status,
        status_message="",
        spec_version=1,
        create_time=NOW,
        update_time=NOW,
    )
    row.endpoints = [
        models.DeploymentEndpoint(deployment_id="dep_1", position=0, address="h:1", served_model_name="a"),
        models.DeploymentEndpoint(deployment_id="dep_1", position=1, address="h:2", served_model_name="b"),
    ]
    return row


def test_a_key_for_the_api_and_for_the_gateways() -> None:
    row = _key()
    message = convert.api_key_to_proto(row, NOW)
    route = convert.route_key(row)
    shared = (
        "id",
        "project_id",
        "prefix",
        "deployment_ids",
        "expire_time",
        "requests_per_minute",
        "tokens_per_minute",
    )
    for name in shared:
        assert getattr(message, name) == getattr(route, name), name
    assert (message.name, message.state) == ("ci", auth_pb2.API_KEY_STATE_ACTIVE)
    assert route.key_hash == row.key_hash and not message.HasField("revoke_time")
    assert "key_hash" not in auth_pb2.ApiKey.DESCRIPTOR.fields_by_name  # the API never carries it
    assert not convert.route_key(_key(expire_time=None)).HasField("expire_time")
    assert convert.api_key_to_proto(_key(revoke_time=NOW), NOW).state == auth_pb2.API_KEY_STATE_REVOKED
    assert convert.api_key_to_proto(row, NOW + timedelta(days=2)).state == auth_pb2.API_KEY_STATE_EXPIRED


def test_a_deployment_for_the_api_and_for_the_gateways() -> None:
    row = _deployment("DEPLOYMENT_STATUS_READY")
    message = convert.deployment_to_proto(row)
    route = convert.route_deployment(row)
    pairs = [(e.address, e.served_model_name) for e in message.endpoints]
    assert (
        pairs == [(e.address, e.served_model_name) for e in route.endpoints] == [("h:1", "a"), ("h:2", "b")]
    )
    assert (route.id, route.project_id, route.name, route.create_time) == (
        message.id,
        message.project_id,
        message.name,
        message.create_time,
    )
    assert (route.requests_per_minute, route.tokens_per_minute) == (5, 7)
    assert route.max_concurrency == message.scaling.max_concurrency == 3  # the gateways enforce it
    assert message.rate_limits == deployment_pb2.RateLimits(requests_per_minute=5, tokens_per_minute=7)
    assert route.ready and message.status == deployment_pb2.DEPLOYMENT_STATUS_READY
    assert message.model.builtin == "tiny-llama" and (route.prompt_id, route.prompt_version) == ("", 0)
    assert not convert.route_deployment(_deployment("DEPLOYMENT_STATUS_LOADING")).ready


def test_enums_are_stored_by_name() -> None:
    for enum, to_name, to_value in (
        (engine_service_pb2.Runner, convert.runner_name, convert.runner_value),
        (deployment_pb2.DeploymentStatus, convert.status_name, convert.status_value),
        (user_pb2.ProjectRole, convert.role_name, convert.role_value),
    ):
        for value in enum.values():
            assert to_name(value) == enum.Name(value) and to_value(to_name(value)) == value
    assert convert.READY == "DEPLOYMENT_STATUS_READY"
    assert convert.route_project(models.Project(id="prj_1", name="team")).name == "team"
