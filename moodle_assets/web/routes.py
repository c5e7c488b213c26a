"""The integration's routes on the web process, in the order they are matched."""

from __future__ import annotations

from .access import access_routes
from .admin import admin_routes
from .changes import changes_routes
from .trigger import trigger_routes

ROUTE_FACTORIES = [trigger_routes, admin_routes, changes_routes, access_routes]
