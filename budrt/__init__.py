"""Shared runtime of Bud Runtime: settings, logging, gRPC plumbing and the `budrt` launcher."""
