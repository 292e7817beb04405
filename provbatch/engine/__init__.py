"""The engine: one batch run (:mod:`.batch`), its plugin lifecycle and backend (:mod:`.lifecycle`),
the progress line (:mod:`.progress`)."""
