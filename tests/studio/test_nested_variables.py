"""Variables nested deeper than one level in a real browser: an object holding an object and an
array of objects, declared in the variable editor, checked on the page before anything is sent
(every problem at once, at the field it names), saved and read back, then walked through the run
form (an object's fields, a list of objects) and rendered by the template."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import log_in, shot
from tests.studio.test_prompt_editor import add_variable, rendered

pytestmark = pytest.mark.integration


def test_objects_in_objects_and_arrays_of_objects(stack: PromptStack, page: Page) -> None:
    stack.engine.keep_requests = True
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("nested-deep")
    window = page.get_by_test_id("window-1")
    window.get_by_label("Template of message 1").fill(
        "{{ order.customer.name }} {{ order.customer.vip }} "
        "{% for l in order.lines %}{{ l.sku }}x{{ l.qty }};{% endfor %}"
    )
    window.get_by_label("Structured", exact=True).check()
    add_variable(window, 1, "order", "object")

    # Checked on the page: an object without fields is refused before anything is sent.
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("alert").filter(has_text="An object needs at least one field.")).to_be_visible()
    expect(page).to_have_url(f"{stack.url}/studio/projects/{stack.project_id}/prompts/new")

    # order.customer: an object in the object.
    window.get_by_role("button", name="Add a field to variable 1", exact=True).click()
    window.get_by_label("Name of field of variable 1 1").fill("customer")
    window.get_by_label("Type of field of variable 1 1").select_option("object")
    inner = "field of field of variable 1 1"
    window.get_by_role("button", name="Add a field to field of variable 1 1", exact=True).click()
    window.get_by_label(f"Name of {inner} 1").fill("name")
    window.get_by_role("button", name="Add a field to field of variable 1 1", exact=True).click()
    window.get_by_label(f"Name of {inner} 2").fill("name")  # twice: refused
    window.get_by_label(f"Type of {inner} 2").select_option("boolean")
    # order.lines: an array of objects.
    window.get_by_role("button", name="Add a field to variable 1", exact=True).click()
    window.get_by_label("Name of field of variable 1 2").fill("lines")
    window.get_by_label("Type of field of variable 1 2").select_option("array")
    window.get_by_label("Item type of field of variable 1 2").select_option("object")
    items = "field of the items of field of variable 1 2"
    window.get_by_role("button", name="Add a field to the items of field of variable 1 2").click()
    window.get_by_label(f"Name of {items} 1").fill("sku")
    window.get_by_role("button", name="Add a field to the items of field of variable 1 2").click()
    window.get_by_label(f"Name of {items} 2").fill("2qty")  # not a name: refused
    window.get_by_label(f"Type of {items} 2").select_option("integer")

    window.get_by_role("button", name="Save").click()
    expect(window.get_by_text('"name" is declared twice at this level.')).to_be_visible()
    expect(window.get_by_text('"2qty" is not a name')).to_be_visible()
    shot(page, "18-nested-variables-errors")
    expect(page).to_have_url(f"{stack.url}/studio/projects/{stack.project_id}/prompts/new")

    window.get_by_label(f"Name of {inner} 2").fill("vip")
    window.get_by_label(f"Name of {items} 2").fill("qty")
    window.get_by_role("button", name="Save").click()
    expect(window.get_by_role("status")).to_contain_text("Saved version 1.")
    shot(page, "19-nested-variables")

    # The run form: the object's fields, the inner object's, a list of objects.
    stack.engine.replies = ["deep ok"]
    window.get_by_role("button", name="Run", exact=True).click()
    form = window.get_by_role("form", name="Run inputs")
    form.get_by_role("textbox", name="customer.name").fill("Ada")
    form.get_by_role("switch", name="customer.vip").check()
    form.get_by_role("button", name="Add item to lines").click()
    form.get_by_role("textbox", name="lines item 1.sku").fill("A1")
    form.get_by_role("spinbutton", name="lines item 1.qty").fill("2")
    form.get_by_role("button", name="Add item to lines").click()
    form.get_by_role("textbox", name="lines item 2.sku").fill("B7")
    form.get_by_role("spinbutton", name="lines item 2.qty").fill("5")
    shot(page, "20-nested-run-form")
    form.get_by_role("button", name="Submit").click()
    expect(window.get_by_test_id("run-output")).to_contain_text("deep ok")
    assert rendered(stack.engine.chat_requests[-1])[-1] == ("user", "Ada True A1x2;B7x5;")

    # Read back from the API with every level.
    window.get_by_label("Version", exact=True).select_option("1")
    expect(window.get_by_label("Type of field of variable 1 1")).to_have_value("object")
    expect(window.get_by_label(f"Type of {inner} 2")).to_have_value("boolean")
    expect(window.get_by_label("Item type of field of variable 1 2")).to_have_value("object")
    expect(window.get_by_label(f"Type of {items} 2")).to_have_value("integer")
