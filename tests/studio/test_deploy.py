"""Deploying from the studio in a real browser: flow 1 (a prompt's editor: the deployment's
settings, then the curl and Python snippets; the Python snippet, run as shown with a project key,
calls the deployment through the openai SDK) and flow 2 (*Deploy a prompt* from the navigation
bar: a prompt of one project deployed into another, pinned, and called with that project's key)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import openai
import pytest
import requests
from playwright.sync_api import Page, expect

from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import REPO, log_in, shot

pytestmark = pytest.mark.integration


def test_flow_1_deploy_with_settings_and_call_it_as_the_snippet_shows(stack: PromptStack, page: Page) -> None:
    prompt = stack.create_prompt(
        "deployable", {"messages": [{"role": "user", "template": "Say {{ input }}"}]}
    )
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/{prompt['id']}")
    panel = page.get_by_role("form", name="Deploy the prompt")
    panel.get_by_label("Deployment name").fill("deployable-live")
    panel.get_by_label("Runs").select_option(label="the version labelled latest")
    panel.get_by_label("Minimum concurrency").fill("1")
    panel.get_by_label("Maximum concurrency (0: no limit)").fill("4")
    panel.get_by_role("switch", name="Autoscale").check()
    panel.get_by_role("switch", name="Caching").check()
    panel.get_by_role("switch", name="Rate limiting").check()
    panel.get_by_label("Requests per minute").fill("120")
    panel.get_by_role("button", name="Deploy").click()
    deployed = page.get_by_test_id("deployed")
    expect(deployed).to_contain_text("Deployed as deployable-live")
    expect(page.get_by_test_id("curl-snippet")).to_contain_text(f"{stack.url}/v1/responses")
    expect(page.get_by_test_id("curl-snippet")).to_contain_text('"id": "deployable-live"')
    shot(page, "10-deployed")

    # The deployment has the settings chosen on the page.
    listed = requests.get(
        f"{stack.url}/v1/projects/{stack.project_id}/deployments", headers=stack.headers(), timeout=10
    ).json()["deployments"]
    deployment = next(d for d in listed if d["name"] == "deployable-live")
    assert deployment["prompt"] == {"prompt_id": prompt["id"], "label": "latest"} | {
        k: v for k, v in deployment["prompt"].items() if k not in {"prompt_id", "label"} and not v
    }
    assert deployment["scaling"]["min_concurrency"] == 1
    assert deployment["scaling"]["max_concurrency"] == 4
    assert deployment["scaling"]["autoscale"] is True
    assert deployment["caching"] is True
    assert deployment["rate_limits"]["requests_per_minute"] == 120

    # The Python snippet, run as it is shown with the project's key, calls it (the openai SDK).
    stack.wait_routed("deployable-live")
    stack.engine.replies = ["Said it."]
    python = page.get_by_test_id("python-snippet").inner_text()
    env = {**os.environ, "BUD_API_KEY": stack.api_key, "PYTHONPATH": str(REPO)}
    ran = subprocess.run([sys.executable, "-c", python], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "Said it."


def test_flow_2_deploy_a_prompt_of_one_project_into_another(stack: PromptStack, page: Page) -> None:
    prompt = stack.create_prompt(
        "shared-greeting", {"messages": [{"role": "user", "template": "Hi {{ input }}"}]}
    )
    stack.add_version(prompt["id"], {"messages": [{"role": "user", "template": "Hello {{ input }}"}]})
    other = requests.post(
        f"{stack.url}/v1/projects", json={"name": "other-team"}, headers=stack.headers(), timeout=10
    ).json()["project"]
    # The prompt's model calls are the caller's (the target project's key): that project serves
    # a chat deployment of the same name.
    model = requests.post(
        f"{stack.url}/v1/projects/{other['id']}/deployments",
        json={"name": stack.model, "model": {"builtin": stack.model}},
        headers=stack.headers(),
        timeout=10,
    ).json()["deployment"]
    key = requests.post(
        f"{stack.url}/v1/projects/{other['id']}/api_keys",
        json={"name": "k"},
        headers=stack.headers(),
        timeout=10,
    ).json()["secret"]

    log_in(page, stack)
    page.get_by_role("link", name="Deploy a prompt").click()
    expect(page.get_by_role("heading", name="Deploy a prompt")).to_be_visible()
    page.get_by_label("Prompt", exact=True).select_option(label="default / shared-greeting")
    expect(page.get_by_label("Version", exact=True)).to_have_value("2")
    page.get_by_label("Version", exact=True).select_option("1")
    page.get_by_label("Target project").select_option(label="other-team")
    panel = page.get_by_role("form", name="Deploy the prompt")
    panel.get_by_label("Deployment name").fill("borrowed-greeting")
    expect(panel.get_by_label("Runs")).to_have_value("v1")
    panel.get_by_role("button", name="Deploy").click()
    expect(page.get_by_test_id("deployed")).to_contain_text("Deployed as borrowed-greeting")
    shot(page, "11-flow-2-deployed")

    listed = requests.get(
        f"{stack.url}/v1/projects/{other['id']}/deployments", headers=stack.headers(), timeout=10
    ).json()["deployments"]
    deployment = next(d for d in listed if d["name"] == "borrowed-greeting")
    # A prompt of another project is pinned (the API keeps no label for it).
    assert (deployment["prompt"]["prompt_id"], deployment["prompt"]["version"]) == (prompt["id"], 1)
    stack.wait_routed("borrowed-greeting")
    deadline = time.monotonic() + 30
    while (
        stack.gateway_tables().deployments.get(model["id"]) is None
        or not stack.gateway_tables().deployments[model["id"]].ready
    ):
        assert time.monotonic() < deadline, "the target project's model never became ready"
        time.sleep(0.05)
    stack.engine.keep_requests = True
    stack.engine.chat_requests.clear()
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key)
    client.responses.create(prompt={"id": "borrowed-greeting", "variables": {"input": "there"}})
    assert [m.content_text for m in stack.engine.chat_requests[-1].messages] == ["Hi there"]


def test_flow_2_edit_and_run_a_copy_in_the_target_project_then_deploy_it(
    stack: PromptStack, page: Page
) -> None:
    source = stack.create_prompt("to-copy", {"messages": [{"role": "user", "template": "Copy {{ input }}"}]})
    other = requests.post(
        f"{stack.url}/v1/projects", json={"name": "copy-team"}, headers=stack.headers(), timeout=10
    ).json()["project"]
    model = requests.post(
        f"{stack.url}/v1/projects/{other['id']}/deployments",
        json={"name": stack.model, "model": {"builtin": stack.model}},
        headers=stack.headers(),
        timeout=10,
    ).json()["deployment"]
    deadline = time.monotonic() + 30
    while (
        stack.gateway_tables().deployments.get(model["id"]) is None
        or not stack.gateway_tables().deployments[model["id"]].ready
    ):
        assert time.monotonic() < deadline, "the target project's model never became ready"
        time.sleep(0.05)

    log_in(page, stack, "/studio/deploy")
    page.get_by_label("Prompt", exact=True).select_option(label="default / to-copy")
    page.get_by_label("Target project").select_option(label="copy-team")
    page.get_by_role("link", name="Edit and run it in copy-team first").click()
    expect(page).to_have_url(re.compile(rf"/studio/projects/{other['id']}/prompts/new\?"))
    window = page.get_by_test_id("window-1")
    expect(window.get_by_label("Template of message 1")).to_have_value("Copy {{ input }}")
    window.get_by_label("Template of message 1").fill("Copied: {{ input }}")
    stack.engine.keep_requests = True
    stack.engine.replies = ["copied run"]
    window.get_by_role("button", name="Run", exact=True).click()
    field = window.get_by_role("form", name="Run inputs").get_by_label("input")
    field.fill("x")
    field.press("Enter")
    expect(window.get_by_test_id("run-output")).to_contain_text("copied run")
    page.get_by_label("Prompt name").fill("to-copy")
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 1.")
    copies = requests.get(
        f"{stack.url}/v1/projects/{other['id']}/prompts", headers=stack.headers(), timeout=10
    ).json()["prompts"]
    assert [p["name"] for p in copies] == ["to-copy"] and copies[0]["id"] != source["id"]
    panel = page.get_by_role("form", name="Deploy the prompt")
    panel.get_by_role("button", name="Deploy").click()
    expect(page.get_by_test_id("deployed")).to_contain_text("Deployed as to-copy")
