"""Registers the integration's routes on the web process (imported once by `create_app`)."""
from __future__ import annotations

from .access import access_routes
from .admin import admin_routes
from .app import _ROUTE_FACTORIES, register_routes
from .trigger import trigger_routes

for _factory in (trigger_routes, admin_routes, access_routes):
    if _factory not in _ROUTE_FACTORIES:
        register_routes(_factory)
