"""Project roles: their order and the decisions made with them."""

from __future__ import annotations

import itertools

import grpc
import pytest

from auth.roles import EDITOR, OWNER, ROLES, VIEWER, allows, require_admin, require_held, role_label
from auth.tokens import Caller
from bud.auth.v1 import user_pb2
from budrt.errors import ServiceError


def test_roles_grow_viewer_editor_owner() -> None:
    assert ROLES == (VIEWER, EDITOR, OWNER)
    assert VIEWER < EDITOR < OWNER
    assert user_pb2.PROJECT_ROLE_UNSPECIFIED not in ROLES
    assert [role_label(r) for r in ROLES] == ["viewer", "editor", "owner"]


@pytest.mark.parametrize(("held", "needed"), list(itertools.product(ROLES, ROLES)))
def test_a_role_allows_what_it_or_a_lower_one_needs(held: int, needed: int) -> None:
    assert allows(held, needed) == (ROLES.index(held) >= ROLES.index(needed))
    if allows(held, needed):
        require_held(held, needed, "prj_1")
    else:
        with pytest.raises(ServiceError) as denied:
            require_held(held, needed, "prj_1")
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert denied.value.reason == "PERMISSION_DENIED"
        assert denied.value.message == (
            f"this needs the {role_label(needed)} role in project 'prj_1'; yours is {role_label(held)}"
        )


def test_platform_admin_only() -> None:
    require_admin(Caller("usr_admin", True), "listing users")
    with pytest.raises(ServiceError) as denied:
        require_admin(Caller("usr_1", False), "listing users")
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert denied.value.message == "listing users is for platform admins"
