"""Adapters: code only where a platform's protocol really differs. The catalog names them as
``module:Class`` within this package; "oauth2" is the standard flow."""

from __future__ import annotations

import importlib
from functools import cache

from portal.oauth import OAuthClient
from portal.providers.adapters.base import Adapter, Authorized, SubAccount
from portal.providers.spec import ProviderSpec

__all__ = ["Adapter", "Authorized", "SubAccount", "adapter_class", "get_adapter"]


@cache
def adapter_class(name: str) -> type[Adapter]:
    if name == "oauth2":
        return Adapter
    module_name, sep, class_name = name.partition(":")
    if not sep or not module_name.isidentifier() or not class_name.isidentifier():
        raise ValueError(f"adapter must look like module:Class, not {name!r}")
    module = importlib.import_module(f"portal.providers.adapters.{module_name}")
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise ValueError(f"adapter {name!r} is not an Adapter")
    return cls


def get_adapter(spec: ProviderSpec, oauth: OAuthClient) -> Adapter:
    return adapter_class(spec.adapter)(oauth)
