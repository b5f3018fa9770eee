"""A prompt's integration tools: connectors the prompt service runs itself with the version's
stored access key (`slack.py`, `notion.py`, each a few function tools with JSON-schema
parameters), what they share (`base.py`: the HTTP call, its failures as safe messages), the
tools a version offers (`toolbox.py`) and the loop that runs the model's calls and feeds their
results back (`loop.py`)."""
