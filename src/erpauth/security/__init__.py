"""Cryptographic building blocks: password hashing, secrets at rest, token signing keys."""
