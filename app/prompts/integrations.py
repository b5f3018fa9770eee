"""The catalogue of integration tools a prompt version may switch on (`integration_tools`): one
definition for the app's checks at save (`body.py`: the access keys each needs) and for
`ListPromptIntegrations` (the studio's tool switches and key forms read it).

The prompt executor runs them (`prompt/tools/`: its connectors); a service never imports another,
so the executor keeps its own declarations and `tests/prompt/test_integration_catalogue.py`
checks that both sides name the same integrations, access keys and functions."""

from __future__ import annotations

from dataclasses import dataclass

from bud.prompt.v1 import prompt_pb2

P = prompt_pb2


@dataclass(frozen=True)
class Credential:
    """An access key an integration needs."""

    name: str
    display_name: str
    description: str


@dataclass(frozen=True)
class Integration:
    """One integration of the catalogue."""

    name: str
    display_name: str
    description: str
    credentials: tuple[Credential, ...]
    # (name, description) of the function tools it offers the model.
    functions: tuple[tuple[str, str], ...]

    def to_proto(self) -> P.PromptIntegration:
        return P.PromptIntegration(
            name=self.name,
            display_name=self.display_name,
            description=self.description,
            credentials=[
                P.PromptIntegrationCredential(
                    name=c.name, display_name=c.display_name, description=c.description
                )
                for c in self.credentials
            ],
            functions=[P.PromptIntegrationFunction(name=n, description=d) for n, d in self.functions],
        )


CATALOGUE: tuple[Integration, ...] = (
    Integration(
        "slack",
        "Slack",
        "Post messages to Slack channels and list the channels the bot can see.",
        (
            Credential(
                "bot_token",
                "Bot token",
                "The Slack app's bot token (xoxb-…), from its OAuth & Permissions page.",
            ),
        ),
        (
            ("slack_post_message", "Post a message to a Slack channel."),
            ("slack_list_channels", "List the Slack channels the bot can see."),
        ),
    ),
    Integration(
        "notion",
        "Notion",
        "Create Notion pages and search the pages and databases shared with the integration.",
        (
            Credential(
                "api_key",
                "API key",
                "The internal integration secret (ntn_… or secret_…), from Notion's integrations page.",
            ),
        ),
        (
            ("notion_create_page", "Create a Notion page under a parent page."),
            ("notion_search", "Search the Notion pages and databases shared with the integration by title."),
        ),
    ),
)


def required_keys() -> dict[str, tuple[str, ...]]:
    """Integration name → the access keys it needs."""
    return {i.name: tuple(c.name for c in i.credentials) for i in CATALOGUE}
