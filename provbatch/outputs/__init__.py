"""What a batch writes besides the run record: results and logs TSV (:mod:`.tsv`), the failures
file (:mod:`.failures`), the YAML report (:mod:`.report`)."""
