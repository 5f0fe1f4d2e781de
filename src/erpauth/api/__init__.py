"""The JSON API that access tokens open."""
