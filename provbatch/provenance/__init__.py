"""Provenance: the run record (:mod:`.record`: manifest, events), what a run ran with
(:mod:`.capture`: run_config.json), run directories (:mod:`.rundirs`), ``provbatch show``
(:mod:`.show`) and ``provbatch rerun`` (:mod:`.rerun`: the checks and the plan; the
engine runs it, :func:`provbatch.api.rerun`)."""
