"""What a plugin may ask the engine about the computation it is part of.

Deliberately tiny: module-level values set by the worker before each
compute (no per-call allocation), read by the plugin through functions.
"""

from __future__ import annotations

#: the attempt of the entity being computed: set by the worker (execution.runner) before each compute
attempt = 1


def current_attempt() -> int:
    """1 for the first computation of the current entity, 2 for its first retry, ..."""
    return attempt


def set_attempt(number: int) -> None:
    global attempt
    attempt = number
