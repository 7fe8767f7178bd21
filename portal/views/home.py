"""Blueprint "home": the front page and a health check for load balancers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, url_for
from sqlalchemy import text

from portal.web import db

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> Any:
    return redirect(url_for("agency_admin.dashboard"))


@bp.get("/healthz")
def healthz() -> Any:
    db().execute(text("SELECT 1"))
    return jsonify(status="ok")
