"""The web application: server-rendered pages where operators sign in, make their own access
tokens, and System Administrators manage the company's API client and its operators."""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from erpauth.http.routing import add_routes
from erpauth.web import audit_trail, signin, system_settings, tokens, user_settings, users
from erpauth.web.errors import install_page_errors, too_large_page
from erpauth.web.render import STATIC

__all__ = ["install", "too_large_page"]


def install(app: FastAPI) -> None:
    """Adds the pages and their assets; call after the API's error handlers are installed."""
    for module in (signin, user_settings, tokens, system_settings, users, audit_trail):
        add_routes(app, module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_page_errors(app)
