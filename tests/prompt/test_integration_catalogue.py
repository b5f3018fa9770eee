"""The integration catalogue has one definition per side: the app's (`app/prompts/integrations.py`:
the checks at save and `ListPromptIntegrations`) and the executor's connectors
(`prompt/tools/`). Both must name the same integrations, access keys and functions."""

from __future__ import annotations

import pytest

from app.prompts import body, integrations
from prompt.tools.toolbox import CONNECTORS

pytestmark = pytest.mark.unit


def test_the_app_lists_what_the_executor_runs() -> None:
    assert {i.name for i in integrations.CATALOGUE} == set(CONNECTORS)
    for item in integrations.CATALOGUE:
        connector = CONNECTORS[item.name]
        assert [c.name for c in item.credentials] == [connector.KEY]
        assert item.display_name == connector.SERVICE
        assert list(item.functions) == [(t.name, t.description) for t in connector.TOOLS]


def test_the_save_checks_use_the_catalogue() -> None:
    assert body.INTEGRATIONS == {"slack": ("bot_token",), "notion": ("api_key",)}


def test_the_proto_carries_every_field() -> None:
    slack = next(i for i in integrations.CATALOGUE if i.name == "slack").to_proto()
    assert slack.display_name == "Slack" and slack.description
    assert [(c.name, c.display_name) for c in slack.credentials] == [("bot_token", "Bot token")]
    assert [f.name for f in slack.functions] == ["slack_post_message", "slack_list_channels"]
