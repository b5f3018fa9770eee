"""Project roles and the decisions made with them.

Roles (ProjectRole values grow with what they allow): a viewer reads a project's resources, an
editor also changes its deployments and keys, an owner also manages its members and updates or
deletes it; a platform admin may do everything. A caller without a role in a project must get the
NOT_FOUND a missing project gets, so ids do not reveal what exists; that answer, and reading the
role held, belong to whoever stores memberships (the app). A caller whose role is too low gets
PERMISSION_DENIED from :func:`require_held`.
"""

from __future__ import annotations

from auth.tokens import Caller
from bud.auth.v1 import user_pb2
from budrt.errors import permission_denied

VIEWER = user_pb2.PROJECT_ROLE_VIEWER
EDITOR = user_pb2.PROJECT_ROLE_EDITOR
OWNER = user_pb2.PROJECT_ROLE_OWNER
# Every role a member can hold, lowest first.
ROLES = (VIEWER, EDITOR, OWNER)


def role_label(role: int) -> str:
    """'viewer', 'editor' or 'owner'."""
    return user_pb2.ProjectRole.Name(role).removeprefix("PROJECT_ROLE_").lower()


def allows(held: int, needed: int) -> bool:
    """Whether holding role `held` allows what needs role `needed`."""
    return held >= needed


def require_held(held: int, needed: int, project_id: str) -> None:
    """PERMISSION_DENIED unless role `held` in the project allows what needs role `needed`."""
    if not allows(held, needed):
        raise permission_denied(
            f"this needs the {role_label(needed)} role in project {project_id!r}; yours is {role_label(held)}"
        )


def require_admin(caller: Caller, what: str) -> None:
    """PERMISSION_DENIED unless the caller is a platform admin."""
    if not caller.admin:
        raise permission_denied(f"{what} is for platform admins")
