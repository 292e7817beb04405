"""A CPU-bound plugin: about 1 ms of CPU per entity (2,000 chained SHA-256 of the id, on the
machine the benchmarks were written on).

Used by benchmarks/bench_cpu.py: what a run measures is how well the engine
spreads CPU-bound work over the cores, start-up included.
"""

import hashlib

ID = "bench_cpu_burn"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["cpu_checksum"]
METHOD = "the first 4 bytes of a chain of SHA-256 digests of the entity id, as an integer"
PARAMETERS = [
    ("rounds", "Integer", "2000", "chained SHA-256 digests per entity (2,000: about 1 ms)"),
]


def compute(entity, rounds=2000, **kwargs):
    digest = entity.encode()
    sha256 = hashlib.sha256
    for _ in range(rounds):
        digest = sha256(digest).digest()
    return [int.from_bytes(digest[:4], "little")], []
