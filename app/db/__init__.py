"""The app database: models, sessions and migrations."""
