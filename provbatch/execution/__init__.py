"""Execution: chunks of entities computed by a pool of workers. :mod:`.runner` computes a chunk in
one process, :mod:`.scheduler` feeds a pool (chunk sizes, requeued items), :mod:`.base` is the pool
interface, :mod:`.registry` names the backends; the pools are :mod:`.serial`, :mod:`.auto`, :mod:`.local_pool`,
:mod:`.ray` and :mod:`.slurm`."""
