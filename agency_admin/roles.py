"""Who may open which admin page: one table, enforced for every request of the blueprint.

The roles are defined in ``portal.services.team``. Every admin endpoint is listed here with the
least role it needs (tests/web/test_roles.py fails on an endpoint missing from the table, so a new
route is a decision, not an accident); an unlisted one needs ``admin`` meanwhile, so a viewer never
reaches a route nobody classified.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_login import current_user

from agency_admin import bp
from portal.services import team

# Reached without logging in.
PUBLIC = frozenset({"agency_admin.login", "agency_admin.signup", "agency_admin.accept_invite"})

VIEWER, ADMIN, OWNER = "viewer", "admin", "owner"
REQUIRED: dict[str, str] = {
    # Reading workspaces, links, connections and their health, the audit log and notifications.
    "agency_admin.dashboard": VIEWER,
    "agency_admin.workspace": VIEWER,
    "agency_admin.list_links": VIEWER,
    "agency_admin.connection_list": VIEWER,
    "agency_admin.connection": VIEWER,
    "agency_admin.audit_log": VIEWER,
    "agency_admin.notification_list": VIEWER,
    "agency_admin.mark_notifications_read": VIEWER,
    "agency_admin.team": VIEWER,
    "agency_admin.logout": VIEWER,
    # Workspaces, links and connections.
    "agency_admin.create_workspace": ADMIN,
    "agency_admin.rename_workspace": ADMIN,
    "agency_admin.archive_workspace": ADMIN,
    "agency_admin.delete_workspace": ADMIN,
    "agency_admin.create_link": ADMIN,
    "agency_admin.revoke_link": ADMIN,
    "agency_admin.reconnect_link": ADMIN,
    "agency_admin.refresh_connection": ADMIN,
    "agency_admin.check_connection": ADMIN,
    "agency_admin.toggle_active": ADMIN,
    "agency_admin.disconnect": ADMIN,
    # Settings: platforms, branding, notifications, API keys, webhooks.
    "agency_admin.platform_apps": ADMIN,
    "agency_admin.save_platform_app": ADMIN,
    "agency_admin.remove_platform_app": ADMIN,
    "agency_admin.custom_platforms_page": ADMIN,
    "agency_admin.create_custom_platform": ADMIN,
    "agency_admin.delete_custom_platform": ADMIN,
    "agency_admin.branding": ADMIN,
    "agency_admin.branding_preview": ADMIN,
    "agency_admin.save_agency_settings": ADMIN,
    "agency_admin.verify_custom_domain": ADMIN,
    "agency_admin.upload_favicon": ADMIN,
    "agency_admin.upload_brand_asset": ADMIN,
    "agency_admin.workspace_branding": ADMIN,
    "agency_admin.workspace_branding_preview": ADMIN,
    "agency_admin.link_branding": ADMIN,
    "agency_admin.link_branding_preview": ADMIN,
    "agency_admin.email_link": ADMIN,
    "agency_admin.link_qr": ADMIN,
    "agency_admin.notification_digest": ADMIN,
    "agency_admin.api_key_list": ADMIN,
    "agency_admin.create_api_key": ADMIN,
    "agency_admin.revoke_api_key": ADMIN,
    "agency_admin.webhook_list": ADMIN,
    "agency_admin.create_webhook": ADMIN,
    "agency_admin.delete_webhook": ADMIN,
    "agency_admin.rotate_webhook_secret": ADMIN,
    "agency_admin.set_webhook_enabled": ADMIN,
    "agency_admin.test_webhook": ADMIN,
    "agency_admin.replay_webhook_delivery": ADMIN,
    "agency_admin.embed_settings": ADMIN,
    "agency_admin.add_embed_origin": ADMIN,
    "agency_admin.remove_embed_origin": ADMIN,
    # The team and the agency itself.
    "agency_admin.invite_member": OWNER,
    "agency_admin.revoke_invite": OWNER,
    "agency_admin.change_member_role": OWNER,
    "agency_admin.remove_member": OWNER,
    "agency_admin.delete_agency": OWNER,
}


def required_role(endpoint: str) -> str:
    return REQUIRED.get(endpoint, ADMIN)


def current_role() -> str:
    return str(current_user.member.role) if current_user.is_authenticated else ""


def allowed(endpoint: str) -> bool:
    """For templates: whether the signed-in member may use ``endpoint`` (hides what would be refused)."""
    return team.at_least(current_role(), required_role(endpoint))


@bp.before_request
def _enforce_role() -> Any:
    endpoint = request.endpoint
    if endpoint is None or endpoint in PUBLIC or not current_user.is_authenticated:
        return None  # unmatched routes 404; the login check handles anonymous requests
    if not team.at_least(current_role(), required_role(endpoint)):
        raise team.NotPermitted()
    return None


@bp.app_context_processor
def _role_helpers() -> dict[str, Any]:
    if request.blueprint == "agency_admin":
        return {"may": allowed}
    return {}
