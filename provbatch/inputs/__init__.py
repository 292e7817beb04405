"""What a batch reads: the entities (:mod:`.entities`), the ids already seen (:mod:`.seen_ids`,
:mod:`.fingerprints`), the entity -> id mapping (:mod:`.idsproc`)."""
