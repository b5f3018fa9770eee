"""Prompt authoring for the app's PromptService (`app/services/prompts.py`): version bodies and
their save-time checks (`body.py`), the encryption of integration access keys (`cipher.py`), and
the database side of prompts, versions and labels (`store.py`)."""
