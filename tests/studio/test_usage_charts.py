"""The usage charts in a real browser: a project's requests, tokens and cost per day, stacked by
deployment, drawn from `GET /v1/projects/{id}/usage` after calls with the project's key (the
deployment priced first: the cost is each call's at the price in force)."""

from __future__ import annotations

import time

import openai
import pytest
import requests
from playwright.sync_api import Page, expect

from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import log_in, shot

pytestmark = pytest.mark.integration


def test_the_usage_tab_charts_requests_tokens_and_cost_per_deployment(stack: PromptStack, page: Page) -> None:
    stack.price_model("0", "0", "0.5")  # half a dollar a call
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
    stack.price_model("0", "0", "0")

    log_in(page, stack, f"/studio/projects/{stack.project_id}/usage")
    expect(page.get_by_role("img", name="Requests: 3 in 14 days")).to_be_visible()
    expect(page.get_by_role("img", name=f"Tokens: {tokens} in 14 days")).to_be_visible()
    # Cost next to tokens: three calls at $0.50 (the API's total_cost_usd too).
    expect(page.get_by_role("img", name="Cost: $1.50 in 14 days")).to_be_visible()
    expect(page.get_by_test_id("usage-total-cost")).to_contain_text("$1.50")
    expect(page.locator(".legend").first).to_contain_text(stack.model)
    shot(page, "12-usage")
    page.get_by_text("As a table").click()
    row = page.get_by_test_id("usage-table").get_by_role("row", name=stack.model)
    expect(row).to_contain_text("3")
    expect(row.get_by_role("cell").last).to_have_text("$1.50")
    # Another period asks again.
    page.get_by_label("Period").select_option("7")
    expect(page.get_by_role("img", name="Requests: 3 in 7 days")).to_be_visible()
