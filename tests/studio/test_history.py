"""A saved prompt's history in a real browser: where each label pointed over time (the API's
`labels:history`) and the diff between two versions, grouped as messages, parameters and
variables, with the templates' line diff."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import log_in, shot

pytestmark = pytest.mark.integration

V1 = {
    "messages": [{"role": "user", "template": "Hello {{ name }}"}],
    "parameters": {"temperature": 0.2},
    "input": {"mode": "IO_MODE_STRUCTURED", "variables": [{"name": "name", "type": "VARIABLE_TYPE_STRING"}]},
}
V2 = {
    "messages": [{"role": "user", "template": "Good morning {{ name }}, in {{ city }}"}],
    "parameters": {"temperature": 0.9},
    "input": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [
            {"name": "name", "type": "VARIABLE_TYPE_STRING"},
            {"name": "city", "type": "VARIABLE_TYPE_STRING"},
        ],
    },
}


def test_label_history_and_a_diff_between_versions(stack: PromptStack, page: Page) -> None:
    prompt = stack.create_prompt("history-greeter", V1)["id"]
    stack.set_label(prompt, "production", 1)
    stack.add_version(prompt, V2)
    stack.set_label(prompt, "production", 2)

    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/{prompt}")
    history = page.get_by_test_id("history")
    history.get_by_text("History and diffs").click()
    rows = history.get_by_test_id("label-history").get_by_role("row")
    # Newest first: moved to v2, then created at v1.
    expect(rows.nth(1)).to_contain_text("production")
    expect(rows.nth(1)).to_contain_text("v1 → v2")
    expect(rows.nth(2)).to_contain_text("created at v1")

    history.get_by_label("From version").select_option("1")
    history.get_by_label("To version").select_option("2")
    history.get_by_role("button", name="Show diff").click()
    diff = history.get_by_test_id("version-diff")
    messages = diff.get_by_test_id("diff-messages")
    expect(messages).to_contain_text("messages[0].template")
    expect(messages).to_contain_text("Hello {{ name }}")
    expect(messages).to_contain_text("Good morning {{ name }}, in {{ city }}")
    parameters = diff.get_by_test_id("diff-parameters")
    expect(parameters).to_contain_text("parameters.temperature")
    expect(parameters).to_contain_text("0.9")
    expect(diff.get_by_test_id("diff-variables")).to_contain_text("city")
    template = diff.get_by_test_id("template-diff")
    expect(template.locator(".removed")).to_contain_text("-Hello {{ name }}")
    expect(template.locator(".added")).to_contain_text("+Good morning {{ name }}, in {{ city }}")
    shot(page, "17-history-diff")

    # The same version on both sides: nothing differs.
    history.get_by_label("From version").select_option("2")
    history.get_by_role("button", name="Show diff").click()
    expect(diff).to_contain_text("v2 and v2 have the same content.")
