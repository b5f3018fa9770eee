"""`python -m budrt` is the `budrt` command (vLLM's child processes need a real __main__ guard)."""

from budrt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
