"""Blueprints. Only portal.app imports them."""
