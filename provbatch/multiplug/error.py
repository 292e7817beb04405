"""MultiPlug 1.2's exceptions (``multiplug.error``), for code written against MultiPlug."""

from __future__ import annotations


class MultiplugError(Exception):
    """Parent class of the MultiPlug errors."""


class ExtensionCompilationError(MultiplugError):
    """A Rust or Nim plugin did not build."""


class InterfaceRequirementError(MultiplugError):
    """A required constant or function is missing from the plugin module."""


class UnsupportedLangError(MultiplugError):
    """The plugin's language (its file suffix) is not supported, or Bash is disabled."""
