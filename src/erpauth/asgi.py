"""Entry point for ASGI servers: ``uvicorn --factory erpauth.asgi:create``."""

from fastapi import FastAPI

from erpauth import allocator
from erpauth.app import create_app
from erpauth.config import Settings
from erpauth.logs import configure_logging


def create() -> FastAPI:
    allocator.limit_retention()
    settings = Settings()
    configure_logging(settings)
    return create_app(settings)
