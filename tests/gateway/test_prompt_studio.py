"""The prompt studio over REST, against the in-process stack (app + instant engine + gateway with
the co-hosted prompt executor): `prompts:run` (an unsaved body), `versions/{version}:run` (a saved
one), `:generateValidation` (a rule turned into a constraint document) and the custom validation
applied to outputs (pass, fail, repair)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.gateway.prompt_stack import PromptStack, prompt_stack

pytestmark = pytest.mark.integration

DRAFT = {
    "system_prompt": "You write to {{ customer }}.",
    "messages": [{"role": "user", "template": "Summarise: {{ text }}"}],
    "input": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [
            {"name": "customer", "type": "VARIABLE_TYPE_STRING"},
            {"name": "text", "type": "VARIABLE_TYPE_STRING"},
        ],
    },
}
RULE_DOCUMENT = {
    "checks": [
        {"check": "contains_variable", "variable": "customer"},
        {"check": "max_words", "n": 6},
    ]
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("studio-stack"))) as running:
        running.engine.keep_requests = True
        yield running


def _post(stack: PromptStack, path: str, body: dict[str, Any], token: str | None = None) -> requests.Response:
    headers = {"authorization": f"Bearer {token or stack.token}"}
    return requests.post(f"{stack.url}{path}", json=body, headers=headers, timeout=30)


def _run_draft(
    stack: PromptStack, variables: dict[str, Any], draft: dict[str, Any] | None = None, **kw: Any
) -> requests.Response:
    body = {"version": {"model": stack.model, **(draft or DRAFT)}, "variables": variables}
    return _post(stack, f"/v1/projects/{stack.project_id}/prompts:run", body, **kw)


def _messages(request: Any) -> list[tuple[str, str]]:
    return [(m.role, m.content_text) for m in request.messages]


def test_runs_an_unsaved_body(stack: PromptStack) -> None:
    stack.engine.replies = ["Dear Ada, all good."]
    reply = _run_draft(stack, {"customer": "Ada", "text": "the invoice"})
    assert reply.status_code == 200, reply.text
    run = reply.json()["run"]
    assert run["text"] == "Dear Ada, all good."
    assert run["model_calls"] == 1 and run.get("version", 0) == 0
    assert int(run["usage"]["total_tokens"]) > 0
    assert _messages(stack.engine.chat_requests[-1]) == [
        ("system", "You write to Ada."),
        ("user", "Summarise: the invoice"),
    ]


def test_runs_a_saved_version_by_number_and_by_label(stack: PromptStack) -> None:
    prompt = stack.create_prompt("studio-saved", DRAFT)["id"]
    stack.add_version(prompt, {**DRAFT, "system_prompt": "Version two for {{ customer }}."})
    base = f"/v1/projects/{stack.project_id}/prompts/{prompt}/versions"
    variables = {"customer": "Bo", "text": "x"}
    one = _post(stack, f"{base}/1:run", {"variables": variables})
    assert one.status_code == 200, one.text
    assert one.json()["run"]["version"] == 1
    assert _messages(stack.engine.chat_requests[-1])[0] == ("system", "You write to Bo.")
    latest = _post(stack, f"{base}/latest:run", {"variables": variables})
    assert latest.status_code == 200, latest.text
    assert latest.json()["run"]["version"] == 2
    assert latest.json()["run"]["response"]["prompt"]["id"] == prompt
    assert _messages(stack.engine.chat_requests[-1])[0] == ("system", "Version two for Bo.")
    missing = _post(stack, f"{base}/9:run", {"variables": variables})
    assert missing.status_code == 404, missing.text
    unknown_label = _post(stack, f"{base}/nolabel:run", {"variables": variables})
    assert unknown_label.status_code == 404, unknown_label.text
    for odd in ("²", "1" * 30):  # a digit str.isdigit takes but int() does not; a huge number
        assert _post(stack, f"{base}/{odd}:run", {"variables": variables}).status_code in (400, 404)


def test_runs_side_by_side(stack: PromptStack) -> None:
    """The studio's compare windows: several drafts at once, each rendered and answered."""
    drafts = [{**DRAFT, "system_prompt": f"Draft {i} for {{{{ customer }}}}."} for i in range(8)]
    before = len(stack.engine.chat_requests)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda d: _run_draft(stack, {"customer": "Cy", "text": "t"}, d), drafts))
    assert [r.status_code for r in replies] == [200] * 8, [r.text for r in replies]
    seen = {_messages(r)[0][1] for r in stack.engine.chat_requests[before:]}
    assert seen == {f"Draft {i} for Cy." for i in range(8)}


def test_errors_name_the_input_and_the_template(stack: PromptStack) -> None:
    missing = _run_draft(stack, {"customer": "Ada"})
    assert missing.status_code == 400, missing.text
    assert "text" in missing.json()["message"]
    unknown = _run_draft(stack, {"customer": "Ada", "text": "t", "extra": 1})
    assert unknown.status_code == 400 and "extra" in unknown.json()["message"]
    undeclared = _run_draft(stack, {}, {"messages": [{"role": "user", "template": "{{ nope }}"}]})
    assert undeclared.status_code == 400 and "nope" in undeclared.json()["message"]
    failing = _run_draft(
        stack,
        {"input": "x"},
        {"messages": [{"role": "user", "template": "{{ input }}{{ 1 / 0 }}"}]},
    )
    assert failing.status_code == 400, failing.text
    assert "messages[0].template" in failing.json()["message"]
    no_model = _post(
        stack,
        f"/v1/projects/{stack.project_id}/prompts:run",
        {"version": {**DRAFT, "model": "no-such-deployment"}, "variables": {}},
    )
    assert no_model.status_code == 400 and "version.model" in no_model.json()["message"]


def _user(stack: PromptStack, name: str, role: str | None) -> str:
    """A new user (with `role` in the stack's project, or none); their token."""
    created = _post(stack, "/v1/users", {"username": name, "password": "a-long-password-1"})
    assert created.status_code == 200, created.text
    if role is not None:
        member = requests.put(
            f"{stack.url}/v1/projects/{stack.project_id}/members/{created.json()['user']['id']}",
            json={"role": role},
            headers=stack.headers(),
            timeout=30,
        )
        assert member.status_code == 200, member.text
    login = requests.post(
        f"{stack.url}/v1/auth/login", json={"username": name, "password": "a-long-password-1"}, timeout=30
    )
    assert login.status_code == 200, login.text
    return login.json()["access_token"]


def test_a_viewer_is_refused_and_an_editor_runs(stack: PromptStack) -> None:
    viewer = _user(stack, "studio-viewer", "PROJECT_ROLE_VIEWER")
    refused = _run_draft(stack, {"customer": "Ada", "text": "t"}, token=viewer)
    assert refused.status_code == 403, refused.text
    outsider = _user(stack, "studio-outsider", None)
    hidden = _run_draft(stack, {"customer": "Ada", "text": "t"}, token=outsider)
    assert hidden.status_code == 404, hidden.text
    editor = _user(stack, "studio-editor", "PROJECT_ROLE_EDITOR")
    allowed = _run_draft(stack, {"customer": "Ada", "text": "t"}, token=editor)
    assert allowed.status_code == 200, allowed.text


def test_another_projects_prompt_is_not_found(stack: PromptStack) -> None:
    prompt = stack.create_prompt("studio-elsewhere", DRAFT)["id"]
    other = _post(stack, "/v1/projects", {"name": "studio-other"})
    assert other.status_code == 200, other.text
    other_id = other.json()["project"]["id"]
    reply = _post(
        stack,
        f"/v1/projects/{other_id}/prompts/{prompt}/versions/1:run",
        {"variables": {"customer": "A", "text": "t"}},
    )
    assert reply.status_code == 404, reply.text


def _studio_usage(stack: PromptStack) -> int:
    reply = requests.get(
        f"{stack.url}/v1/projects/{stack.project_id}/usage", headers=stack.headers(), timeout=30
    )
    assert reply.status_code == 200, reply.text
    return sum(int(b.get("requests", 0)) for b in reply.json().get("buckets", []) if not b.get("api_key_id"))


def test_usage_is_recorded_against_the_project(stack: PromptStack) -> None:
    before = _studio_usage(stack)
    reply = _run_draft(stack, {"customer": "Ada", "text": "t"})
    assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 20
    while _studio_usage(stack) <= before:
        assert time.monotonic() < deadline, "the studio run's usage was never recorded"
        time.sleep(0.2)


def test_the_public_face_cannot_name_a_project(stack: PromptStack) -> None:
    """The header the executor names a project with is no credential at the edge."""
    reply = requests.post(
        f"{stack.url}/v1/responses",
        json={"model": stack.model, "input": "hi"},
        headers={"x-bud-acting-project": stack.project_id},
        timeout=30,
    )
    assert reply.status_code == 401, reply.text


# ---- GenerateValidation and the custom validation of outputs -----------------------------------

GENERATED = {
    "constraints": [
        {
            "field": "",
            "minLength": None,
            "maxLength": 200,
            "pattern": None,
            "minimum": None,
            "maximum": None,
            "minItems": None,
            "maxItems": None,
        }
    ],
    "checks": [
        {"check": "contains_variable", "field": "", "variable": "customer", "n": None, "regex": None},
        {"check": "max_words", "field": "", "variable": None, "n": 6, "regex": None},
    ],
}


def test_generate_validation_asks_under_structured_output(stack: PromptStack) -> None:
    prompt = stack.create_prompt("studio-rules", DRAFT)["id"]
    stack.engine.replies = ["not json", orjson.dumps(GENERATED).decode()]
    reply = _post(
        stack,
        f"/v1/projects/{stack.project_id}/prompts/{prompt}:generateValidation",
        {"rule": "mention the customer by name, at most 6 words", "model": stack.model},
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["model_calls"] == 2  # the invalid first answer was sent back once
    assert answer["validation"] == {
        "schema": {"maxLength": 200},
        "checks": [
            {"check": "contains_variable", "variable": "customer"},
            {"check": "max_words", "n": 6},
        ],
    }
    asked = stack.engine.chat_requests[-1]
    assert asked.response_format.type == "json_schema"
    assert orjson.loads(asked.response_format.json_schema.schema)["required"] == ["constraints", "checks"]
    assert "mention the customer" in _messages(asked)[1][1]
    # The document saves as a version's output validation.
    saved = stack.add_version(
        prompt, {**DRAFT, "output": {"validation": answer["validation"], "rule": "..."}}
    )
    assert saved == 2


def test_generate_validation_errors(stack: PromptStack) -> None:
    prompt = stack.create_prompt("studio-rules-errors", DRAFT)["id"]
    path = f"/v1/projects/{stack.project_id}/prompts/{prompt}:generateValidation"
    no_model = _post(stack, path, {"rule": "short", "model": "nope"})
    assert no_model.status_code == 400 and no_model.json()["message"].startswith("model")
    stack.engine.replies = ['{"checks": [{"check": "exec", "field": ""}]}'] * 3
    invalid = _post(stack, path, {"rule": "run this python", "model": stack.model})
    assert invalid.status_code == 400, invalid.text
    assert "constraint document" in invalid.json()["message"]
    viewer = _user(stack, "studio-rules-viewer", "PROJECT_ROLE_VIEWER")
    assert _post(stack, path, {"rule": "x", "model": stack.model}, token=viewer).status_code == 403


def test_a_saved_document_is_checked(stack: PromptStack) -> None:
    bad = {**DRAFT, "output": {"validation": {"schema": {"$ref": "http://example.com/x"}}}}
    reply = _run_draft(stack, {"customer": "A", "text": "t"}, bad)
    assert reply.status_code == 400 and "version.output.validation.schema.$ref" in reply.json()["message"]
    unknown = {
        **DRAFT,
        "output": {"validation": {"checks": [{"check": "contains_variable", "variable": "who"}]}},
    }
    reply = _run_draft(stack, {"customer": "A", "text": "t"}, unknown)
    assert reply.status_code == 400 and "who" in reply.json()["message"]


def test_custom_validation_passes_fails_and_repairs(stack: PromptStack) -> None:
    checked = {**DRAFT, "output": {"validation": RULE_DOCUMENT}}
    variables = {"customer": "Ada", "text": "t"}
    stack.engine.replies = ["Thanks Ada, done."]
    passed = _run_draft(stack, variables, checked)
    assert passed.status_code == 200 and passed.json()["run"]["text"] == "Thanks Ada, done."
    stack.engine.replies = ["Thanks, done."]
    failed = _run_draft(stack, variables, checked)
    assert failed.status_code == 400, failed.text
    message = failed.json()["message"]
    assert "contains_variable" in message and "Thanks, done." in message
    stack.engine.replies = ["Thanks to you, dear customer, all is done now.", "Ada: done."]
    repaired = _run_draft(stack, variables, {**checked, "allow_multiple_calls": True})
    assert repaired.status_code == 200, repaired.text
    run = repaired.json()["run"]
    assert run["text"] == "Ada: done." and run["model_calls"] == 2
    repair_turn = _messages(stack.engine.chat_requests[-1])[-1][1]
    assert "max_words" in repair_turn and "contains_variable" in repair_turn


def test_custom_validation_on_a_structured_output_field(stack: PromptStack) -> None:
    structured = {
        **DRAFT,
        "output": {
            "mode": "IO_MODE_STRUCTURED",
            "variables": [{"name": "summary", "type": "VARIABLE_TYPE_STRING"}],
            "validation": {
                "schema": {"properties": {"summary": {"pattern": "^[A-Z]"}}},
                "checks": [{"check": "matches", "field": "summary", "regex": "done\\.$"}],
            },
        },
        "allow_multiple_calls": True,
    }
    stack.engine.replies = ['{"summary": "lower case, done."}', '{"summary": "Upper, done."}']
    reply = _run_draft(stack, {"customer": "A", "text": "t"}, structured)
    assert reply.status_code == 200, reply.text
    run = reply.json()["run"]
    assert run["output"] == {"summary": "Upper, done."} and run["model_calls"] == 2


def test_a_deployed_prompt_is_checked_by_its_saved_document(stack: PromptStack) -> None:
    """The saved document applies to `/v1/responses` calls too (the same executor path)."""
    prompt = stack.create_prompt("studio-deployed-rules", {**DRAFT, "output": {"validation": RULE_DOCUMENT}})[
        "id"
    ]
    stack.engine.replies = ["No name here."]
    reply = requests.post(
        f"{stack.url}/v1/responses",
        json={"prompt": {"id": prompt, "variables": {"customer": "Ada", "text": "t"}}},
        headers={"authorization": f"Bearer {stack.api_key}"},
        timeout=30,
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "invalid_model_output"
    stack.engine.replies = ["Done, Ada."]
    reply = requests.post(
        f"{stack.url}/v1/responses",
        json={"prompt": {"id": prompt, "variables": {"customer": "Ada", "text": "t"}}},
        headers={"authorization": f"Bearer {stack.api_key}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text


def test_the_integration_catalogue_is_listed_to_logged_in_users(stack: PromptStack) -> None:
    reply = requests.get(f"{stack.url}/v1/prompt-integrations", headers=stack.headers(), timeout=10)
    assert reply.status_code == 200, reply.text
    listed = {i["name"]: i for i in reply.json()["integrations"]}
    assert set(listed) == {"slack", "notion"}
    slack = listed["slack"]
    assert slack["display_name"] == "Slack" and "Slack" in slack["description"]
    assert [c["name"] for c in slack["credentials"]] == ["bot_token"]
    assert {f["name"] for f in slack["functions"]} == {"slack_post_message", "slack_list_channels"}
    assert [c["name"] for c in listed["notion"]["credentials"]] == ["api_key"]
    # An API key is no user login; nobody is no one.
    for headers in ({}, {"authorization": f"Bearer {stack.api_key}"}):
        refused = requests.get(f"{stack.url}/v1/prompt-integrations", headers=headers, timeout=10)
        assert refused.status_code == 401, refused.text
