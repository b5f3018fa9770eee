"""Authentication and authorisation shared by the app and the gateways: API keys, bearer
credentials, access tokens, passwords, project roles and the login throttle (see README.md)."""
