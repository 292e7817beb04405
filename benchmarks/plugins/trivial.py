"""A plugin that computes almost nothing: the length of the entity id.

Used by the engine benchmarks (benchmarks/bench_prenacs.py, bench_ray.py, bench_10m.py,
bench_overhead.py): its compute costs well under a microsecond, so what a run measures
is the engine around it.
"""

ID = "bench_trivial"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["id_length"]
METHOD = "len() of the entity id"
PARAMETERS = []


def compute(entity, **kwargs):
    return [len(entity)], []
