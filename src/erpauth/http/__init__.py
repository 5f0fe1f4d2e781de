"""HTTP plumbing shared by the API and the web pages: errors, middleware, request helpers."""
