"""Bash plugins: the script's variables read by bash (:mod:`.constants`), its functions run in a
persistent shell (:mod:`.runner`), wrapped as a module (:mod:`.loader`)."""
