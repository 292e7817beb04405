"""``python -m provbatch.cli``: the ``provbatch`` command."""

from . import provbatch_main

provbatch_main()
