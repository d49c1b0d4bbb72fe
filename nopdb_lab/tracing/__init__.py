"""The tracing engine: events, scopes, the per-code plan, the dispatcher and its backends.

This layer is a leaf: it imports nothing else from ``nopdb_lab`` (``tests/test_architecture.py``
checks it), so the NoPdb API, the analyses and the Jupyter layer all build on it.
"""
