"""Provenance: the run record (:mod:`.record`: manifest, events), what a run ran with
(:mod:`.capture`: run_config.json), run directories (:mod:`.rundirs`), ``provbatch show``
(:mod:`.show`) and ``provbatch rerun`` (:mod:`.rerun`)."""
