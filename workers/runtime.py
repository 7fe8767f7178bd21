"""The worker process's runtime: built once from the environment."""

from __future__ import annotations

from functools import cache

from portal.config import load_settings
from portal.runtime import Runtime, build_runtime


@cache
def current() -> Runtime:
    return build_runtime(load_settings())
