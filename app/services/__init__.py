"""The gRPC servicers of the app service, one module per service."""
