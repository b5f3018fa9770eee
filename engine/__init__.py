"""Engine-side helpers for Bud Runtime (model fixtures, vLLM integration)."""
