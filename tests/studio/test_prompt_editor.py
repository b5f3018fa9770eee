"""Flow 1 of the studio in a real browser: a structured prompt written in the editor (system
prompt, a Jinja message, a string, a boolean and an enum input), saved, run through the
step-by-step form with the keyboard, saved again as version 2 with a label moved to it, version 1
loaded back; a broken template's error shown at its message; two compare windows with different
templates run side by side."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests
from playwright.sync_api import Locator, Page, expect

from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import log_in, shot

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _keep_requests(stack: PromptStack) -> None:
    stack.engine.keep_requests = True
    stack.engine.chat_requests.clear()
    stack.engine.replies.clear()


def rendered(request: Any) -> list[tuple[str, str]]:
    """The (role, text) of a chat request's messages, as the engine received them."""
    return [(m.role, m.content_text) for m in request.messages]


def add_variable(window: Locator, index: int, name: str, kind: str, options: str = "") -> None:
    window.get_by_role("button", name="Add variable").click()
    window.get_by_label(f"Name of variable {index}").fill(name)
    window.get_by_label(f"Type of variable {index}").select_option(kind)
    if options:
        window.get_by_label(f"Options of variable {index}").fill(options)


def new_structured_prompt(page: Page, stack: PromptStack, name: str) -> Locator:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill(name)
    window = page.get_by_test_id("window-1")
    expect(window.get_by_label("Deployment")).to_have_value(stack.model)
    window.get_by_label("System prompt").fill("You greet {{ name }}.")
    window.get_by_label("Template of message 1").fill("Formal: {{ formal }}; tone: {{ tone }}")
    window.get_by_label("Structured", exact=True).check()
    add_variable(window, 1, "name", "string")
    add_variable(window, 2, "formal", "boolean")
    add_variable(window, 3, "tone", "enum", "warm, cold")
    return window


def test_flow_1_write_save_run_version_2_label_and_load_version_1(stack: PromptStack, page: Page) -> None:
    window = new_structured_prompt(page, stack, "greeter")
    window.get_by_text("Model parameters").click()
    window.get_by_label("Temperature").fill("0.5")
    window.get_by_label("Version note").fill("first")
    shot(page, "05-editor")
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 1.")
    expect(page).to_have_url(re.compile(r"/studio/projects/[^/]+/prompts/pmpt_"))

    # Run: one input per step, in declared order, with the keyboard only.
    stack.engine.replies = ["Hello Ada, coldly."]
    window.get_by_role("button", name="Run", exact=True).click()
    form = window.get_by_role("form", name="Run inputs")
    expect(form).to_contain_text("Step 1 of 3")
    expect(form.get_by_label("name")).to_be_focused()
    page.keyboard.type("Ada")
    page.keyboard.press("Enter")
    expect(form).to_contain_text("Step 2 of 3")
    switch = form.get_by_role("switch")
    expect(switch).to_be_focused()
    page.keyboard.press("Space")
    expect(switch).to_be_checked()
    shot(page, "06-run-form")
    page.keyboard.press("Enter")
    expect(form).to_contain_text("Step 3 of 3")
    # Back keeps what was entered.
    form.get_by_role("button", name="Back").click()
    expect(form.get_by_role("switch")).to_be_checked()
    expect(form.get_by_role("switch")).to_be_focused()
    page.keyboard.press("Enter")
    form.get_by_label("tone").select_option("cold")
    expect(form.get_by_role("button", name="Submit")).to_be_visible()
    page.keyboard.press("Enter")
    output = window.get_by_test_id("run-output")
    expect(output).to_contain_text("Hello Ada, coldly.")
    expect(output).to_contain_text("model call")
    assert rendered(stack.engine.chat_requests[-1]) == [
        ("system", "You greet Ada."),
        ("user", "Formal: True; tone: cold"),
    ]
    assert stack.engine.chat_requests[-1].temperature == 0.5
    shot(page, "07-run-output")

    # Version 2 with a note; the label `production` moved to it from the page.
    window.get_by_label("System prompt").fill("You welcome {{ name }}.")
    window.get_by_label("Version note").fill("warmer")
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 2.")
    window.get_by_label("Label", exact=True).fill("production")
    window.get_by_role("button", name="Point label at v2").click()
    expect(window.get_by_role("status")).to_contain_text('Label "production" now points at version 2.')
    expect(page.get_by_label("Labels")).to_contain_text("production → v2")
    prompt_id = page.url.rsplit("/", 1)[1]
    label = requests.get(
        f"{stack.url}/v1/projects/{stack.project_id}/prompts/{prompt_id}/labels/production",
        headers=stack.headers(),
        timeout=10,
    ).json()
    assert label["label"]["version"] == 2

    # A label is deleted from the page too (the prompt's default label, `latest`, cannot be).
    expect(page.get_by_role("button", name="Delete label latest")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete label production").click()
    expect(page.get_by_label("Labels")).not_to_contain_text("production")

    # The version picker loads version 1 back into the window.
    window.get_by_label("Version", exact=True).select_option("1")
    expect(window.get_by_label("System prompt")).to_have_value("You greet {{ name }}.")
    expect(window.get_by_label("Temperature")).to_have_value("0.5")
    expect(window.get_by_label("Type of variable 2")).to_have_value("boolean")
    expect(window.get_by_label("Options of variable 3")).to_have_value("warm, cold")


def test_an_invalid_template_s_error_is_shown_at_its_message(stack: PromptStack, page: Page) -> None:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("broken")
    window = page.get_by_test_id("window-1")
    window.get_by_role("button", name="Add message").click()
    window.get_by_label("Template of message 2").fill("Fine line\n{% if input %}never closed")
    window.get_by_role("button", name="Save").click()
    errors = window.get_by_test_id("message-1").locator(".field-errors")
    expect(errors).to_contain_text(re.compile("line 2", re.I))
    expect(window.get_by_label("Template of message 2")).to_have_attribute("aria-invalid", "true")
    expect(window.get_by_test_id("message-0").locator(".field-errors")).to_have_count(0)
    shot(page, "08-template-error")
    # Nothing was saved.
    prompts = requests.get(f"{stack.url}/v1/prompts", headers=stack.headers(), timeout=10).json()
    assert "broken" not in {p["name"] for p in prompts.get("prompts", [])}


def test_two_compare_windows_with_different_templates_run_side_by_side(
    stack: PromptStack, page: Page
) -> None:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("compare")
    first = page.get_by_test_id("window-1")
    first.get_by_label("Template of message 1").fill("Left: {{ input }}")
    page.get_by_role("button", name="Add a compare window").click()
    second = page.get_by_test_id("window-2")
    # A copy of the first, then edited on its own.
    expect(second.get_by_label("Template of message 1")).to_have_value("Left: {{ input }}")
    second.get_by_label("Template of message 1").fill("Right: {{ input }}")
    expect(first.get_by_label("Template of message 1")).to_have_value("Left: {{ input }}")

    # Each window runs on its own: its own template, its own output.
    for window, reply in ((first, "from the left"), (second, "from the right")):
        stack.engine.replies = [reply]
        window.get_by_role("button", name="Run", exact=True).click()
        field = window.get_by_role("form", name="Run inputs").get_by_label("input")
        field.fill("hi")
        field.press("Enter")
        expect(window.get_by_test_id("run-output")).to_contain_text(reply)
    assert [rendered(r)[-1][1] for r in stack.engine.chat_requests] == ["Left: hi", "Right: hi"]

    # Run all windows: one form, every window runs, side by side.
    stack.engine.chat_requests.clear()
    page.get_by_role("button", name="Run all windows").click()
    field = page.locator(".run-all").get_by_role("form", name="Run inputs").get_by_label("input")
    field.fill("both")
    field.press("Enter")
    expect(first.get_by_test_id("run-output")).to_contain_text("ok")
    expect(second.get_by_test_id("run-output")).to_contain_text("ok")
    assert sorted(rendered(r)[-1][1] for r in stack.engine.chat_requests) == ["Left: both", "Right: both"]
    # Each window saves on its own: the first creates the prompt, the second adds version 2.
    first.get_by_role("button", name="Save").click()
    expect(first.get_by_role("status")).to_contain_text("Saved version 1.")
    second.get_by_role("button", name="Save").click()
    expect(second.get_by_role("status")).to_contain_text("Saved version 2.")
    shot(page, "09-compare-windows")


def test_a_structured_output_is_shown_parsed_with_its_repair_attempts(stack: PromptStack, page: Page) -> None:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("structured-out")
    window = page.get_by_test_id("window-1")
    window.get_by_label("Structured (JSON fields)").check()
    window.get_by_role("button", name="Add output field").click()
    window.get_by_label("Name of output field 1").fill("greeting")
    window.get_by_role("button", name="Add output field").click()
    window.get_by_label("Name of output field 2").fill("polite")
    window.get_by_label("Type of output field 2").select_option("boolean")
    window.get_by_role("switch", name="Allow multiple calls").check()
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 1.")

    # The first answer is not the declared object: the run asks again and shows the valid one.
    stack.engine.replies = ["not json", '{"greeting": "Hi Ada", "polite": true}']
    window.get_by_role("button", name="Run", exact=True).click()
    field = window.get_by_role("form", name="Run inputs").get_by_label("input")
    field.fill("Ada")
    field.press("Enter")
    output = window.get_by_test_id("run-output")
    expect(output.locator("pre").nth(1)).to_contain_text('"greeting": "Hi Ada"')
    expect(output.locator("pre").nth(1)).to_contain_text('"polite": true')
    expect(window.get_by_test_id("attempts")).to_contain_text("2 model calls")
    shot(page, "13-structured-output")
    # The version saved the output's fields: reloading it brings them back.
    window.get_by_label("Version", exact=True).select_option("1")
    expect(window.get_by_label("Type of output field 2")).to_have_value("boolean")


def test_tools_keys_are_masked_once_saved_and_kept_when_not_retyped(stack: PromptStack, page: Page) -> None:
    secret = "xoxb-studio-secret-9876"
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("with-tools")
    window = page.get_by_test_id("window-1")
    window.get_by_role("switch", name="Slack").check()
    window.get_by_label("Slack bot token").fill(secret)
    window.get_by_role("button", name="Add function tool").click()
    window.get_by_label("Name of function 1").fill("lookup_order")
    window.get_by_label("Parameters of function 1 (JSON schema)").fill("{not json")
    expect(window.get_by_test_id("function-0")).to_contain_text("Not a JSON object.")
    window.get_by_label("Parameters of function 1 (JSON schema)").fill(
        '{"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}'
    )
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 1.")
    prompt_id = page.url.rsplit("/", 1)[1]

    # Read back: the key masked (never the secret in the page), the function's schema.
    page.reload()
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/{prompt_id}")
    window = page.get_by_test_id("window-1")
    expect(window.get_by_role("switch", name="Slack")).to_be_checked()
    expect(window.get_by_label("Slack bot token")).to_have_attribute("placeholder", re.compile("…9876"))
    expect(window.get_by_label("Parameters of function 1 (JSON schema)")).to_have_value(
        re.compile('"order_id"')
    )
    assert secret not in page.content()
    shot(page, "16-tools")

    # Saved again without retyping it: the stored key is kept (the executor holds it).
    window.get_by_label("Version note").fill("same key")
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 2.")
    stack.wait_for(prompt_id, 2)
    version = next(v for v in stack.executor.store.prompts[prompt_id].snapshot.versions if v.version == 2)
    assert version.integration_tools[0].access_keys["bot_token"] == secret
    assert version.tools[0].function.name == "lookup_order"


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
    "checks": [{"check": "contains_variable", "field": "", "variable": "customer", "n": None, "regex": None}],
}


def test_custom_validation_generated_from_a_rule_accepted_saved_and_applied(
    stack: PromptStack, page: Page
) -> None:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("validated")
    window = page.get_by_test_id("window-1")
    window.get_by_label("Template of message 1").fill("Write to {{ customer }}")
    window.get_by_label("Structured", exact=True).check()
    add_variable(window, 1, "customer", "string")
    window.get_by_text("Custom validation").click()
    expect(
        window.get_by_role("button", name="Generate")
    ).to_be_disabled()  # the rule is about a saved version
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 1.")

    window.get_by_label("Rule in words").fill("the answer must name the customer")
    stack.engine.replies = [json.dumps(GENERATED)]
    window.get_by_role("button", name="Generate").click()
    proposed = window.get_by_test_id("proposed-validation")
    expect(proposed).to_contain_text('"variable": "customer"')
    shot(page, "17-generated-validation")
    proposed.get_by_role("button", name="Accept").click()
    expect(window.get_by_label("Constraint document (JSON)")).to_have_value(re.compile('"contains_variable"'))
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 2.")
    prompt_id = page.url.rsplit("/", 1)[1]
    saved = requests.get(
        f"{stack.url}/v1/projects/{stack.project_id}/prompts/{prompt_id}/versions/2",
        headers=stack.headers(),
        timeout=10,
    ).json()["version"]["output"]
    assert saved["rule"] == "the answer must name the customer"
    assert saved["validation"] == {
        "schema": {"maxLength": 200},
        "checks": [{"check": "contains_variable", "variable": "customer"}],
    }

    # Applied: an answer that does not name the customer fails the run, in words.
    stack.engine.replies = ["Hello there."]
    window.get_by_role("button", name="Run", exact=True).click()
    field = window.get_by_role("form", name="Run inputs").get_by_label("customer")
    field.fill("Ada")
    field.press("Enter")
    expect(window.get_by_test_id("run-error")).to_contain_text(re.compile("customer|valid", re.I))


def test_basic_validation_of_an_input_variable(stack: PromptStack, page: Page) -> None:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("constrained")
    window = page.get_by_test_id("window-1")
    window.get_by_label("Template of message 1").fill("Code {{ code }}")
    window.get_by_label("Structured", exact=True).check()
    add_variable(window, 1, "code", "string")
    window.get_by_label("Validation of variable 1").select_option("basic")
    window.get_by_label("Min length of variable 1").fill("5")
    window.get_by_label("Max length of variable 1").fill("3")
    window.get_by_role("button", name="Save").click()
    # min above max: refused, named at the variable's row.
    expect(window.locator(".variables .field-errors")).to_contain_text(
        re.compile("min_length|max_length", re.I)
    )
    window.get_by_label("Min length of variable 1").fill("1")
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 1.")

    def run(value: str) -> None:
        window.get_by_role("button", name="Run", exact=True).click()
        field = window.get_by_role("form", name="Run inputs").get_by_label("code")
        field.fill(value)
        field.press("Enter")

    run("ABCDE")
    expect(window.get_by_test_id("run-error")).to_contain_text("code")
    shot(page, "18-input-validation")
    stack.engine.replies = ["fine"]
    run("AB")
    expect(window.get_by_test_id("run-output")).to_contain_text("fine")


def test_a_run_shows_the_function_tool_calls_the_model_made(stack: PromptStack, page: Page) -> None:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("calls-tools")
    window = page.get_by_test_id("window-1")
    window.get_by_role("button", name="Add function tool").click()
    window.get_by_label("Name of function 1").fill("lookup_order")
    stack.engine.replies = [[("lookup_order", '{"order_id": "A-17"}')]]
    window.get_by_role("button", name="Run", exact=True).click()
    field = window.get_by_role("form", name="Run inputs").get_by_label("input")
    field.fill("where is my order?")
    field.press("Enter")
    calls = window.get_by_test_id("tool-calls")
    expect(calls).to_contain_text("lookup_order")
    expect(calls).to_contain_text('{"order_id": "A-17"}')


def test_array_and_object_inputs_declared_and_walked_through_the_step_form(
    stack: PromptStack, page: Page
) -> None:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("nested-inputs")
    window = page.get_by_test_id("window-1")
    window.get_by_label("Template of message 1").fill(
        "{{ customer.name }} {{ customer.vip }} {{ tags | join(',') }}"
    )
    window.get_by_label("Structured", exact=True).check()
    add_variable(window, 1, "tags", "array")
    window.get_by_label("Item type of variable 1").select_option("string")
    add_variable(window, 2, "customer", "object")
    window.get_by_role("button", name="Add a field to variable 2").click()
    window.get_by_label("Name of field of variable 2 1").fill("name")
    window.get_by_role("button", name="Add a field to variable 2").click()
    window.get_by_label("Name of field of variable 2 2").fill("vip")
    window.get_by_label("Type of field of variable 2 2").select_option("boolean")
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 1.")

    stack.engine.replies = ["nested ok"]
    window.get_by_role("button", name="Run", exact=True).click()
    form = window.get_by_role("form", name="Run inputs")
    expect(form.get_by_role("button", name="Add item")).to_be_focused()
    form.get_by_role("button", name="Add item").click()
    form.get_by_role("textbox", name="tags item 1").fill("a")
    form.get_by_role("button", name="Add item").click()
    form.get_by_role("textbox", name="tags item 2").fill("b")
    form.get_by_role("button", name="Next").click()
    form.get_by_role("textbox", name="name").fill("Ada")
    form.get_by_role("switch", name="vip").check()
    shot(page, "19-object-input")
    form.get_by_role("button", name="Submit").click()
    expect(window.get_by_test_id("run-output")).to_contain_text("nested ok")
    assert rendered(stack.engine.chat_requests[-1])[-1] == ("user", "Ada True a,b")
    # Saved and read back with their item type and fields.
    window.get_by_label("Version", exact=True).select_option("1")
    expect(window.get_by_label("Item type of variable 1")).to_have_value("string")
    expect(window.get_by_label("Type of field of variable 2 2")).to_have_value("boolean")
