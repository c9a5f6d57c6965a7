"""Routes of private_key_jwt connection keys (being written)."""
from __future__ import annotations

from chalice import Blueprint

bp = Blueprint(__name__)
