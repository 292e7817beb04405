"""GC content and length of the sequences in a FASTA file (plain or gzipped).

Example Python plugin for provbatch: the entity is a path to a FASTA file.
"""

import gzip

ID = "gc_content_py"
VERSION = "1.0.0"
INPUT = "path to a FASTA file (plain, or gzipped with a .gz suffix)"
OUTPUT = ["gc_content", "genome_size"]
METHOD = "counts G, C, A and T (any case) over all sequence lines; GC content = (G+C)/(A+C+G+T)"
IMPLEMENTATION = "pure Python, bytes.count over each sequence line"
PARAMETERS = [
    ("digits", "Integer", "4", "decimal digits the GC content is rounded to"),
]


def compute(entity, digits=4, **kwargs):
    opener = gzip.open if entity.endswith(".gz") else open
    gc = at = 0
    n_records = 0
    with opener(entity, "rb") as handle:
        for line in handle:
            if line.startswith(b">"):
                n_records += 1
                continue
            upper = line.upper()
            gc += upper.count(b"G") + upper.count(b"C")
            at += upper.count(b"A") + upper.count(b"T")
    total = gc + at
    logs = [f"records\t{n_records}"]
    if total == 0:
        logs.append("warning\tno A, C, G or T in the file")
        return [0.0, 0], logs
    return [round(gc / total, int(digits)), total], logs
