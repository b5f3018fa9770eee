"""The edge: annotation-driven HTTP/JSON→gRPC transcoding, API-key auth, routing, limits, usage."""
