"""Fault injection: an entity fails, crashes its worker, hangs or sleeps, at random but reproducibly.

For testing failure handling (retries, timeouts, lost workers, resume) and
for the benchmarks of it. Every draw comes from a generator seeded with
(seed, entity, attempt): the same batch with the same seed fails the same
way, and a retry (attempt 2, 3, ...) draws anew, as a transient fault would.

Parameters, modelled on the "example runner" of distributed schedulers:
- fail_prob: probability that compute raises RuntimeError (after the sleep);
- crash_prob: probability that the worker process dies (os._exit);
- hang_prob: probability that compute never returns (until killed);
- sleep_sec: seconds to sleep per entity: a number, or [low, high] for a
  uniform draw. Exactly two bounds (ValueError otherwise), numeric
  (TypeError), low <= high (ValueError); anything else is a TypeError.
- seed: seeds the draws.
"""

import numbers
import os
import random
import time

try:  # the attempt number, when run by provbatch
    from provbatch.context import current_attempt
except ImportError:  # pragma: no cover - used standalone
    def current_attempt():
        return 1

ID = "fault_injection"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["fault_draw", "fault_attempt"]
METHOD = "draws uniform numbers from (seed, entity, attempt) and fails, crashes, hangs or sleeps accordingly"
ADVICE = "for testing failure handling only; computes nothing useful"
PARAMETERS = [
    ("fail_prob", "Float", "0", "probability that compute raises RuntimeError"),
    ("crash_prob", "Float", "0", "probability that the worker process dies (os._exit)"),
    ("hang_prob", "Float", "0", "probability that compute hangs forever"),
    ("sleep_sec", "yaml", "0", "seconds to sleep: a number, or [low, high] drawn uniformly"),
    ("seed", "Integer", "0", "seed of the draws"),
]


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_sleep_sec(sleep_sec):
    """Validate sleep_sec: a number, or exactly two numeric bounds low <= high."""
    if _is_number(sleep_sec):
        return
    if isinstance(sleep_sec, (list, tuple)) or hasattr(sleep_sec, "__iter__") and not isinstance(sleep_sec, (str, bytes, dict)):
        bounds = list(sleep_sec)
        if len(bounds) != 2:
            raise ValueError(
                "random sleep bounds must be an iterable with exactly two values: lower bound and upper bound; "
                f"sleep_sec has length {len(bounds)}"
            )
        low, high = bounds
        if not (_is_number(low) and _is_number(high)):
            raise TypeError("random sleep bounds must be numeric")
        if float(low) > float(high):
            raise ValueError("lower bound must be <= upper bound for random sleep")
        return
    raise TypeError("sleep_sec must be a number or a two-element iterable")


def get_sleep_sec(sleep_sec, rng):
    """The seconds to sleep: the number itself, or a uniform draw in [low, high]."""
    check_sleep_sec(sleep_sec)
    if _is_number(sleep_sec):
        return float(sleep_sec)
    low, high = sleep_sec
    return rng.uniform(float(low), float(high))


def initialize(sleep_sec=0, **kwargs):
    check_sleep_sec(sleep_sec)  # a bad sleep_sec stops the batch before the first compute
    return None


def draws(entity, seed, attempt):
    """The (crash, hang, fail) draws and the generator, for an entity's attempt."""
    rng = random.Random(f"{seed}:{entity}:{attempt}")
    return rng.random(), rng.random(), rng.random(), rng


def compute(entity, state=None, fail_prob=0.0, crash_prob=0.0, hang_prob=0.0, sleep_sec=0, seed=0, **kwargs):
    attempt = current_attempt()
    crash, hang, fail, rng = draws(entity, seed, attempt)
    if crash < crash_prob:
        os._exit(3)
    if hang < hang_prob:
        while True:
            time.sleep(3600)
    pause = get_sleep_sec(sleep_sec, rng)
    if pause > 0:
        time.sleep(pause)
    if fail < fail_prob:
        raise RuntimeError(f"injected failure (draw {fail:.4f} < fail_prob {fail_prob})")
    return [round(fail, 6), attempt], []
