"""The model registry's place. Only its contract is served today (`bud.registry.v1`: every RPC
answers UNIMPLEMENTED); no catalogue, import or scan is built, and deployments of a registry model
are refused."""
