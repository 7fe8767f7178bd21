"""Routes of the connect blueprint for one non-OAuth (or multi-instance) flow; registered by portal.views.connect."""

from __future__ import annotations
