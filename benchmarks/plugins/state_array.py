"""A plugin whose state is a large numpy array (200 MB by default), read by every compute.

Used by benchmarks/bench_state.py: the state must reach each worker once
(fork copy-on-write, Ray's object store), not once per task.
"""

import numpy as np

ID = "bench_state_array"
VERSION = "1.0.0"
INPUT = "an entity id ending with a number"
OUTPUT = ["state_sum"]
METHOD = "sum of 1,000 consecutive values of the state array, at an offset given by the id's number"
PARAMETERS = [
    ("megabytes", "Integer", "200", "size of the state array"),
]


def initialize(megabytes=200, **kwargs):
    values = np.arange(megabytes * 1_000_000 // 8, dtype=np.float64)
    values.flags.writeable = False
    return {"values": values}


def compute(entity, state=None, **kwargs):
    values = state["values"]
    offset = (int(entity.rsplit("_", 1)[-1]) * 7919) % (len(values) - 1000)
    return [float(values[offset:offset + 1000].sum())], []


def finalize(state):
    pass
