"""The prompt services' place. Only their contract is served today (`bud.prompt.v1`: every RPC
answers UNIMPLEMENTED); prompt execution is not built, and deployments of a prompt are refused."""
