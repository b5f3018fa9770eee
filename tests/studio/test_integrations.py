"""The tools' integration catalogue in a real browser comes from the API
(`GET /v1/prompt-integrations`), not from the page: what the app lists — here with one more
integration added to its catalogue while it runs — is what the editor offers, with its
description and its access-key fields."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import Page, expect

from app.prompts import integrations
from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import log_in, shot

pytestmark = pytest.mark.integration

JIRA = integrations.Integration(
    "jira",
    "Jira",
    "Create and search Jira issues.",
    (integrations.Credential("api_token", "API token", "An Atlassian API token."),),
    (("jira_create_issue", "Create an issue."),),
)


def test_the_editor_lists_the_catalogue_the_api_answers(
    stack: PromptStack, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integrations, "CATALOGUE", (*integrations.CATALOGUE, JIRA))
    listed = requests.get(f"{stack.url}/v1/prompt-integrations", headers=stack.headers(), timeout=10).json()[
        "integrations"
    ]
    assert [i["name"] for i in listed] == ["slack", "notion", "jira"]

    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    window = page.get_by_test_id("window-1")
    for item in listed:
        box = window.get_by_test_id(f"integration-{item['name']}")
        expect(box.get_by_role("switch", name=item["display_name"])).to_be_visible()
        expect(box).to_contain_text(item["description"])
        for function in item["functions"]:
            expect(box).to_contain_text(function["name"])
    jira = window.get_by_test_id("integration-jira")
    expect(jira.get_by_label("Jira API token")).to_have_count(0)
    jira.get_by_role("switch", name="Jira").check()
    expect(jira.get_by_label("Jira API token")).to_have_attribute("type", "password")
    shot(page, "16-integration-catalogue")
