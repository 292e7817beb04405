"""What a plugin may ask the engine about the computation it is part of.

Deliberately tiny: module-level values set by the worker before each
compute (no per-call allocation), read by the plugin through functions.
"""

from __future__ import annotations

_attempt = 1


def current_attempt() -> int:
    """1 for the first computation of the current entity, 2 for its first retry, ..."""
    return _attempt


def set_attempt(attempt: int) -> None:
    global _attempt
    _attempt = attempt
