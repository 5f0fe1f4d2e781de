"""The OAuth 2.0 protocol surface: token endpoint, client authentication, bearer tokens."""
