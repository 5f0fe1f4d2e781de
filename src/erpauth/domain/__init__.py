"""The business rules: companies and their licenses, API clients, operators, tokens."""
