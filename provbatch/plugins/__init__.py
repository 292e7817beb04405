"""Plugins in every language: the loader registry (:mod:`.registry`), the loader interface
(:mod:`.base`), finding and loading a PLUGIN argument (:mod:`.loading`), the build cache
(:mod:`.cache`), and one loader per language (:mod:`.python`, :mod:`.rust`, :mod:`.nim`, :mod:`.bash`)."""
