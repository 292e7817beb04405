"""Execution: chunks of entities computed by a pool of workers. :mod:`.runner` computes a chunk in
one process, :mod:`.scheduler` feeds a pool (chunk sizes, requeued items), :mod:`.base` is the pool
interface; the pools are :mod:`.serial`, :mod:`.local_pool` and :mod:`.ray`."""
