"""Increment 1 of the studio in a real browser: log in, the projects, a project's deployments
(*Create deployment*: a model, or a prompt starting from a copy of another) and API keys (a
created key's secret shown once and working; a rotated key's old secret and a revoked key
refused), the headers the gateway serves the app with, and the app on a tablet and by keyboard."""

from __future__ import annotations

import re
import time

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import log_in, shot

pytestmark = pytest.mark.integration


def test_the_app_is_served_with_its_caching_and_security_headers(stack: PromptStack) -> None:
    page = requests.get(f"{stack.url}/studio/", timeout=10)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-cache"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    script = re.search(r'src="(/studio/assets/main-[A-Z0-9]+\.js)"', page.text)
    assert script, page.text
    asset = requests.get(f"{stack.url}{script.group(1)}", timeout=10)
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert asset.headers["content-type"].startswith("text/javascript")
    # A deep link is the app too (it routes on the path); the API keeps its own routes.
    assert requests.get(f"{stack.url}/studio/projects/x/keys", timeout=10).text == page.text
    assert requests.get(f"{stack.url}/healthz", timeout=10).json() == {"status": "ok"}


def test_log_in_and_see_the_projects_and_deployments(stack: PromptStack, page: Page) -> None:
    page.goto(f"{stack.url}/studio/")
    shot(page, "01-login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile("invalid|incorrect|password", re.I))
    log_in(page, stack)
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    shot(page, "02-projects")
    page.get_by_role("link", name=re.compile("default", re.I)).first.click()
    expect(page).to_have_url(re.compile(rf"/studio/projects/{stack.project_id}$"))
    table = page.get_by_role("table")
    expect(table).to_contain_text(stack.model)
    expect(table).to_contain_text("ready")
    shot(page, "03-deployments")


def wait_refused(stack: PromptStack, secret: str) -> None:
    """Waits until the gateway refuses `secret` (401)."""
    deadline = time.monotonic() + 10
    headers = {"authorization": f"Bearer {secret}"}
    while requests.get(f"{stack.url}/v1/models", headers=headers, timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "the gateway still accepts the key"
        time.sleep(0.05)


def test_create_an_api_key_see_its_secret_once_rotate_and_revoke_it(stack: PromptStack, page: Page) -> None:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/keys")
    page.get_by_label("Key name").fill("studio-key")
    page.get_by_label("Key name").press("Enter")
    secret = page.get_by_test_id("new-secret").input_value()
    assert secret.startswith("bud-")
    shot(page, "04-api-key-created")
    models = requests.get(f"{stack.url}/v1/models", headers={"authorization": f"Bearer {secret}"}, timeout=10)
    assert models.status_code == 200, models.text
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_test_id("new-secret")).to_have_count(0)
    # Shown once: the page, reloaded, has the key's prefix only.
    page.reload()
    log_in(page, stack, f"/studio/projects/{stack.project_id}/keys")
    expect(page.locator("tr[data-key=studio-key]")).to_contain_text("active")
    assert secret not in page.content()

    # Rotate: a new secret, shown once; the old one stops working.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate studio-key").click()
    rotated = page.get_by_test_id("new-secret").input_value()
    assert rotated.startswith("bud-") and rotated != secret
    wait_refused(stack, secret)  # the gateways learn it from the routing watch, at once or nearly
    secret = rotated
    assert (
        requests.get(
            f"{stack.url}/v1/models", headers={"authorization": f"Bearer {secret}"}, timeout=10
        ).status_code
        == 200
    )
    page.get_by_role("button", name="Done").click()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke studio-key").click()
    expect(page.locator("tr[data-key=studio-key]")).to_contain_text("revoked")
    wait_refused(stack, secret)


def test_create_deployment_a_model_or_a_prompt_from_an_existing_one(stack: PromptStack, page: Page) -> None:
    source = stack.create_prompt("template-source", {"system_prompt": "You are terse.", "messages": []})
    log_in(page, stack, f"/studio/projects/{stack.project_id}")
    page.get_by_role("button", name="Create deployment").click()
    # A model: its name and source.
    form = page.get_by_role("form", name="Create a model deployment")
    form.get_by_label("Deployment name").fill("second-llama")
    form.get_by_label("Source").select_option("builtin")
    form.get_by_label("Model").fill(stack.model)
    form.get_by_role("button", name="Create").click()
    expect(page.get_by_role("table")).to_contain_text("second-llama")
    shot(page, "14-create-deployment")
    # A prompt, starting from a copy of an existing one's content.
    page.get_by_label("A prompt").check()
    page.get_by_label("Start from").select_option(label="a copy of template-source")
    page.get_by_role("link", name="Write the prompt").click()
    expect(page).to_have_url(re.compile(rf"/prompts/new\?from={source['id']}$"))
    window = page.get_by_test_id("window-1")
    expect(window.get_by_label("System prompt")).to_have_value("You are terse.")
    expect(window).to_contain_text("unsaved")


def test_usable_on_a_tablet_and_by_keyboard(stack: PromptStack, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 820, "height": 1180}, has_touch=True)
    page = context.new_page()
    try:
        log_in(page, stack, f"/studio/projects/{stack.project_id}/keys")
        # Nothing wider than the screen but the compare windows' own sideways scroll.
        for path in ("keys", "deployments", "usage", "prompts/new"):
            if path != "keys":  # a new page load: the token was in the old page's memory
                log_in(page, stack, f"/studio/projects/{stack.project_id}/{path}")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} is {overflow}px wider than a tablet"
        shot(page, "15-tablet-editor")
        # Keyboard: Tab from the top reaches the skip link first, then the navigation, in order.
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Bud Studio")).to_be_focused()
        page.keyboard.press("Tab")
        expect(
            page.get_by_role("navigation", name="Main").get_by_role("link", name="Projects")
        ).to_be_focused()
    finally:
        context.close()
