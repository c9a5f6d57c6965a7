"""Placeholder: filled in by the issue-16 work."""
from __future__ import annotations

from chalice import Blueprint

bp = Blueprint(__name__)
