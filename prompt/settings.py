"""The prompt executor's settings (shared ones come from `budrt.settings.RuntimeSettings`)."""

from __future__ import annotations

from pydantic import Field

from budrt.settings import RuntimeSettings


class PromptSettings(RuntimeSettings):
    """The runtime's settings plus the prompt executor's knobs (`BUD_<FIELD>`, or BUD_CONFIG)."""

    # `budrt up`: run the prompt executor inside the gateway's process (the gateway calls it, and
    # it calls the gateway's OpenAI service, in process: no extra hop); false = its own process
    # at `prompt_address`.
    prompt_in_gateway: bool = True
    # A render (all of a version's templates) running longer than this is stopped: 400
    # RENDER_LIMIT.
    render_timeout_s: float = Field(default=0.05, gt=0, le=10)
    # A render producing more characters than this (each template) is stopped: 400 RENDER_LIMIT.
    render_max_chars: int = Field(default=200_000, ge=1, le=10_000_000)
    # Model calls a structured output gets when the version allows multiple calls (the first plus
    # repairs); without allow_multiple_calls a version gets exactly one.
    max_output_attempts: int = Field(default=3, ge=1, le=10)
    # Integration tools (`prompt/tools/`): where each connector calls (a test points them at a
    # local fake), how long one call may take, how many tool steps a run may take (each step runs
    # the model's integration calls and calls the model again; allow_multiple_calls only), and
    # the longest tool result (characters of JSON) the model is given.
    slack_base_url: str = "https://slack.com/api"
    notion_base_url: str = "https://api.notion.com"
    tool_timeout_s: float = Field(default=10.0, gt=0, le=120)
    max_tool_steps: int = Field(default=5, ge=1, le=20)
    tool_output_max_chars: int = Field(default=16_000, ge=100, le=1_000_000)
