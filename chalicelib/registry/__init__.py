"""The read side of what administrators configure: what login and token paths look up.

Each module reads one aggregate through its per-container cache and holds that cache's only
instance. No pydantic and no Management API module is imported from here, so a cold
``/authorize``, callback or token request does not load the body models (issue 17). The
Management API's write side (``management/*``) imports the forget functions from here and drops
the cache its change makes stale, in the same container (SPEC §8).
"""
