"""The app service: Bud Runtime's management layer.

It owns the platform's state in SQL (SQLite or PostgreSQL) — projects, deployments, API keys,
usage — and serves it over gRPC (`bud.app.v1` and `bud.auth.v1`). Gateways follow the tables they
authenticate and route with through `RoutingService.WatchRouting`; a background reconciler makes
the engines serve what the deployments ask for.

Entry point: :func:`app.server.serve` (run by the component in :mod:`app.component`).
"""
