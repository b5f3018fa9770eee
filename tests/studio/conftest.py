"""The prompt studio in a real browser: Playwright (PyPI `playwright`, its sync API)
driving Debian's `chromium` (Playwright's own browser download cannot work here), against the
in-process prompt stack (`tests/gateway/prompt_stack.py`: the app, the instant engine, the gateway
serving `/studio/`, the co-hosted prompt executor).

The studio's assets are built first when they are missing (`npm ci` and `npm run build` in
`studio/`, as `make studio` does). Screenshots of each main screen go to
`build/test-artifacts/studio/` (`BUD_TEST_ARTIFACTS` moves it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.app.conftest import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.gateway.prompt_stack import PromptStack, prompt_stack

REPO = Path(__file__).resolve().parents[2]
STUDIO = REPO / "studio"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("BUD_TEST_ARTIFACTS", REPO / "build" / "test-artifacts")) / "studio"
# Assertions wait as long as actions (the context's 15 s): on a loaded 2-core machine a login
# (password hashing) alone can pass Playwright's default 5 s.
expect.set_options(timeout=15_000)


def build_studio() -> None:
    """Builds studio/dist unless it is there (the gateway serves it at /studio/)."""
    if (STUDIO / "dist" / "index.html").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("the studio tests need npm to build studio/ (make studio; Debian: apt-get install npm)")
    if not (STUDIO / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=STUDIO, check=True)
    subprocess.run([npm, "run", "build"], cwd=STUDIO, check=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, without the sandbox (tests run as root here). Module-scoped,
    not the session's: Playwright's sync API keeps an event loop running in this thread while it
    is started, which the asyncio tests of other modules cannot share."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the studio tests need Debian's chromium at {CHROMIUM} (make test-deps)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (nothing kept from another test) 1280 px wide, the width the
    studio is laid out for."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    build_studio()
    with prompt_stack(Path(tmp_path_factory.mktemp("studio-stack"))) as running:
        # The studio's runs stream: a scripted reply is the stream's words.
        running.engine.stream_replies = True
        yield running


def shot(page: Page, name: str) -> Path:
    """A screenshot of the page as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Page, stack: PromptStack, path: str = "/studio/") -> None:
    """Opens `path` and logs in as the platform admin with the keyboard."""
    page.goto(f"{stack.url}{path}")
    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
