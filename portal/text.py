"""Sentences a service hands to a client page: said in English by the service, in the reader's language by
the page (``portal.i18n.translate``).

Services stay free of the web framework and of the request's language; the template is the catalog's key and
its parameters are data, never markup (the page escapes them like any value). A parameter that is itself a
``Text`` is translated too ("the bot", "that chat").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True, eq=True)
class Text:
    template: str
    params: Mapping[str, Param] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:  # English: logs, tests, anything outside a request
        if not self.params:
            return self.template
        return self.template % {name: str(value) for name, value in self.params.items()}


Param = Union[str, Text]  # noqa: UP007 - evaluated at run time by the alias
