"""A prenacs 1.2 compute plugin that returns the name compute was given (for the --idsproc tests)."""

ID = "py_echo"
VERSION = "1.0"
INPUT = "a word or a file name"
OUTPUT = ["entity_name"]


def compute(name, **kwargs):
    return [name], []
