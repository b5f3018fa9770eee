"""An expired session in a real browser: the page's token expires while the user edits an
unsaved prompt; their next call is refused (401, TOKEN_EXPIRED), the login form comes up over
the page (the same user, the same URL), and once they log in again the refused call (the save)
is sent again and goes through — nothing they typed was lost. *Log out instead* ends the session.

The expiry is the app's own (`auth.tokens.Authenticator.verify` answering "the access token has
expired"), made to come early: every token issued before the test's cut-off is expired, the new
one is not (the lifetime is hours, too long to wait for)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from playwright.sync_api import Page, expect

from auth.tokens import Authenticator, Caller
from budrt.errors import Reason, unauthenticated
from tests.app.conftest import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.gateway.prompt_stack import PromptStack
from tests.studio.conftest import log_in, shot

pytestmark = pytest.mark.integration


def expire_tokens_issued_until_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, tokens issued before this second's end are expired (in this process: the
    stack's app)."""
    cutoff = int(time.time()) + 1
    time.sleep(cutoff - time.time() + 0.05)  # tokens issued from here on are newer
    real = Authenticator.verify

    def verify(self: Authenticator, token: str) -> Caller:
        caller = real(self, token)
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        if claims["iat"] < cutoff:
            raise unauthenticated("the access token has expired; log in again", reason=Reason.TOKEN_EXPIRED)
        return caller

    monkeypatch.setattr(Authenticator, "verify", verify)


def test_an_expired_session_logs_in_again_without_losing_the_draft(
    stack: PromptStack, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_in(page, stack, f"/studio/projects/{stack.project_id}/prompts/new")
    page.get_by_label("Prompt name").fill("after-relogin")
    window = page.get_by_test_id("window-1")
    expect(window.get_by_label("Deployment")).to_have_value(stack.model)
    window.get_by_label("System prompt").fill("Unsaved work {{ input }}")
    window.get_by_label("Template of message 1").fill("Kept: {{ input }}")
    window.get_by_label("Version note").fill("typed before the expiry")

    expire_tokens_issued_until_now(monkeypatch)
    window.get_by_role("button", name="Save").click()
    dialog = page.get_by_role("dialog", name="Your session has expired")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Username")).to_have_value(ADMIN_USERNAME)
    expect(dialog.get_by_label("Password")).to_be_focused()
    # Where they were, as they left it (under the dialog).
    expect(page).to_have_url(f"{stack.url}/studio/projects/{stack.project_id}/prompts/new")
    expect(window.get_by_label("Template of message 1")).to_have_value("Kept: {{ input }}")
    shot(page, "21-session-expired")

    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(dialog).to_have_count(0)
    # The refused save was sent again with the new token: the draft as it was typed.
    expect(window.get_by_role("status")).to_contain_text("Saved version 1.")
    expect(window.get_by_label("System prompt")).to_have_value("Unsaved work {{ input }}")
    expect(window.get_by_label("Template of message 1")).to_have_value("Kept: {{ input }}")
    prompt_id = page.url.rsplit("/", 1)[1]
    assert prompt_id.startswith("pmpt_"), page.url

    # Expired again: *Log out instead* ends the session (the full login page).
    expire_tokens_issued_until_now(monkeypatch)
    page.get_by_role("link", name="Projects").first.click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Log out instead").click()
    expect(page.get_by_role("form", name="Log in")).to_be_visible()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
