"""The plugin contract: parameters and their datatypes, result values, attribute definitions,
the checks of a loaded plugin. Pure functions over values: no I/O but reading definitions files."""
