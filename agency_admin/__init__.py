"""The agency admin panel: blueprint and login manager."""

from __future__ import annotations

from flask import Blueprint
from flask_login import LoginManager

bp = Blueprint("agency_admin", __name__, url_prefix="/admin")
login_manager = LoginManager()
login_manager.login_view = "agency_admin.login"
login_manager.login_message = "Please log in to continue."
login_manager.session_protection = "basic"

from agency_admin import (  # noqa: E402,F401  (routes register on import)
    api_keys,
    auth,
    branding,
    embed,
    offboarding,
    roles,
    team,
    views,
    webhooks,
)
