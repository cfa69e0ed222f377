"""Tracking backends and the resolver that picks one from a tracking URI."""

from __future__ import annotations

from .base import Store
from .resolver import resolve_store

__all__ = ["Store", "resolve_store"]
