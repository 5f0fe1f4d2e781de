"""erpauth: API authentication for multi-company business software."""

__version__ = "0.1.0"
