"""A Python plugin in the prenacs 1.2 style with attrtables datatypes.

Every value of an array or composite attribute is its own column, as
attrtables stores it: compute returns one flat list (1 + 3 + 9 values).
"""

ID = "py_letters"
VERSION = "1.0"
INPUT = "a word"
OUTPUT = ["n_letters", "vowel_counts", "summary"]
PARAMETERS = [("label", "String(10)", "w", "last value of summary")]


def compute(word, **kwargs):
    vowels = [word.count(v) for v in "aei"]
    label = kwargs.get("label", "w")
    return [len(word), *vowels, word.startswith("a"), *vowels, len(word) / 2,
            word, word.upper(), word[::-1], label], []
