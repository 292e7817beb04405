"""provbatch's version, in a module of its own so that any layer can record it without
importing the package's public face (``provbatch/__init__.py``)."""

__version__ = "0.1.0"
