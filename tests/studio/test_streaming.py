"""Streamed runs in the studio, in a real browser: the output shows word by word while the
engine writes it (partial text on the page before the run's end), and *Stop* cancels the run on
the server (the engine's stream is closed long before it would have ended); a run shows its cost
at its deployment's price."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import log_in, shot

pytestmark = pytest.mark.integration


def text_prompt(page: Page, stack: PromptStack) -> Locator:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    window = page.get_by_test_id("window-1")
    expect(window.get_by_label("Deployment")).to_have_value(stack.model)
    window.get_by_label("Template of message 1").fill("Tell me about {{ input }}")
    return window


def start_run(page: Page, window: Locator, text: str) -> None:
    window.get_by_role("button", name="Run", exact=True).click()
    form = window.get_by_role("form", name="Run inputs")
    form.get_by_role("textbox").fill(text)
    page.keyboard.press("Enter")


def test_the_output_streams_in_as_it_is_written(stack: PromptStack, page: Page) -> None:
    window = text_prompt(page, stack)
    stack.engine.replies.clear()
    stack.engine.replies.append("one two three four five six seven eight")
    stack.engine.chunk_delay = 0.3
    try:
        start_run(page, window, "numbers")
        partial = window.get_by_test_id("run-partial")
        # Partial output while the run goes on: the first words, not yet the last.
        expect(partial).to_contain_text("one two")
        assert "eight" not in partial.inner_text()
        expect(window.get_by_role("button", name="Stop")).to_be_visible()
        shot(page, "14-run-streaming")
        output = window.get_by_test_id("run-output")
        expect(output).to_contain_text("one two three four five six seven eight")
        expect(output).to_contain_text("first text after")
        expect(window.get_by_role("button", name="Stop")).to_have_count(0)
    finally:
        stack.engine.chunk_delay = 0.0


def test_stop_cancels_the_run_on_the_server(stack: PromptStack, page: Page) -> None:
    window = text_prompt(page, stack)
    stack.engine.replies.clear()
    stack.engine.replies.append(" ".join(f"word{i}" for i in range(100)))
    stack.engine.chunk_delay = 0.2  # 20 s in all
    try:
        start_run(page, window, "a long story")
        expect(window.get_by_test_id("run-partial")).to_contain_text("word1")
        assert stack.engine.open_streams == 1
        window.get_by_role("button", name="Stop").click()
        expect(window.get_by_test_id("run-stopped")).to_contain_text("Stopped")
        deadline = time.monotonic() + 5
        while stack.engine.open_streams and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stack.engine.open_streams == 0  # the engine's stream was cancelled, not finished
        assert "word99" not in window.get_by_test_id("run-stopped").inner_text()
        shot(page, "15-run-stopped")
    finally:
        stack.engine.chunk_delay = 0.0
        stack.engine.replies.clear()


def test_a_run_shows_its_cost(stack: PromptStack, page: Page) -> None:
    window = text_prompt(page, stack)
    stack.engine.replies.clear()
    stack.engine.replies.append("a priced answer")
    stack.price_model("0", "0", "0.25")  # a quarter a call: the page shows $0.25
    try:
        start_run(page, window, "money")
        output = window.get_by_test_id("run-output")
        expect(output).to_contain_text("a priced answer")
        expect(window.get_by_test_id("run-cost")).to_have_text("$0.25")
    finally:
        stack.price_model("0", "0", "0")
