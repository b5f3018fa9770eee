"""Prompt execution: sandboxed Jinja templates, typed inputs and outputs, structured output with
repair, tools. Not built yet: its RPCs answer UNIMPLEMENTED."""
