"""Gradient checking helpers (in progress: see issue 3)."""
