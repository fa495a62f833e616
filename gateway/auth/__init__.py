"""Who may call the gateway: API keys, OIDC tokens, the permission table, rate limits."""
