"""The registry's tables (`models`), its database access (`session`) and its migrations
(`migrate`; revisions in `registry/migrations/`, version table `alembic_version_registry`)."""
