"""The usage charts in a real browser: a project's requests and tokens per day, stacked by
deployment, drawn from `GET /v1/projects/{id}/usage` after calls with the project's key."""

from __future__ import annotations

import time

import openai
import pytest
import requests
from playwright.sync_api import Page, expect

from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import log_in, shot

pytestmark = pytest.mark.integration


def test_the_usage_tab_charts_requests_and_tokens_per_deployment(stack: PromptStack, page: Page) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key)
    for _ in range(3):
        client.chat.completions.create(
            model=stack.model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    deadline = time.monotonic() + 30
    while True:
        buckets = (
            requests.get(
                f"{stack.url}/v1/projects/{stack.project_id}/usage", headers=stack.headers(), timeout=10
            )
            .json()
            .get("buckets", [])
        )
        if sum(int(b["requests"]) for b in buckets) >= 3:
            break
        assert time.monotonic() < deadline, "the usage never reached the app"
        time.sleep(0.2)
    tokens = sum(int(b.get("prompt_tokens", 0)) + int(b.get("completion_tokens", 0)) for b in buckets)

    log_in(page, stack, f"/studio/projects/{stack.project_id}/usage")
    expect(page.get_by_role("img", name="Requests: 3 in 14 days")).to_be_visible()
    expect(page.get_by_role("img", name=f"Tokens: {tokens} in 14 days")).to_be_visible()
    expect(page.locator(".legend").first).to_contain_text(stack.model)
    shot(page, "12-usage")
    page.get_by_text("As a table").click()
    row = page.get_by_test_id("usage-table").get_by_role("row", name=stack.model)
    expect(row).to_contain_text("3")
    # Another period asks again.
    page.get_by_label("Period").select_option("7")
    expect(page.get_by_role("img", name="Requests: 3 in 7 days")).to_be_visible()
