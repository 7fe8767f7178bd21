"""The platform catalog: loaded once, validated, looked up by name."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

from portal.providers.spec import CatalogError, ProviderSpec, build_spec

__all__ = ["CatalogError", "ProviderSpec", "load_catalog", "get_provider", "parse_catalog"]


def parse_catalog(text: str) -> dict[str, ProviderSpec]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog is not valid TOML: {exc}") from exc
    return {name: build_spec(name, entry) for name, entry in data.items()}


@cache
def load_catalog() -> dict[str, ProviderSpec]:
    """Every platform in providers/catalog.toml, validated (raises CatalogError)."""
    return parse_catalog(resources.files("portal.providers").joinpath("catalog.toml").read_text())


def get_provider(name: str) -> ProviderSpec | None:
    return load_catalog().get(name)
