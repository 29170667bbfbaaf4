"""Embedding caches: in memory (:mod:`.memory`), on disk (:mod:`.disk`) and the background
prefetcher (:mod:`.prefetch`)."""
