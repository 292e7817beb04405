"""The Ray backend: one actor per worker, for clusters and real scale.

Each actor loads the plugin once and holds the state, which is put in Ray's
object store once and handed to every actor by reference: numpy arrays in it
are mapped read-only from the node's shared memory, never copied per task.
Compiled plugins are built by the driver only; the built library travels in
the object store too, for nodes that do not have it in their cache.

Ray is imported here only, and this module only when the Ray backend is used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .base import Completed, Pool, PoolOptions, lost_outcomes
from .reaper import start_watchdog
from .runner import Chunk, ChunkRunner, RunnerConfig


class RayWorker:
    """The actor class (made remote lazily, so that importing this module does not need Ray)."""

    def __init__(self, config: RunnerConfig, state_box: list[Any]) -> None:
        # The state comes boxed, so that Ray does not resolve it before the
        # plugin is loaded: a state whose class is defined in the plugin can
        # only be deserialized once the plugin module exists in this process.
        import ray

        self.runner = ChunkRunner(config)
        if state_box[0] is not None:
            self.runner.state = ray.get(state_box[0])

    def ready(self) -> int:
        return os.getpid()

    def run_chunk(self, chunk: Chunk) -> tuple[list, float, list[str]]:
        outcomes, seconds = self.runner.run_chunk(chunk)
        return outcomes, seconds, self.runner.take_output()

    def finish(self, return_state: bool) -> tuple[Any, list[str]]:
        state = self.runner.finish(return_state)
        return state, self.runner.take_output()


#: how long the driver tries to open a TCP connection to a cluster's GCS before saying it is not reachable
PROBE_SECONDS = 5.0


class _ActionlessRayWarnings(logging.Filter):
    """Drop Ray's warnings that ask nothing of a provbatch user.

    Every run printed "Token authentication is enabled for this Ray cluster.
    Set RAY_AUTH_MODE=disabled to opt out": Ray's secure default, nothing to
    do. Its counterpart ("... is disabled ...") follows the user's own
    RAY_AUTH_MODE=disabled and is kept only when joining a cluster (others may
    reach it), not for the private instance provbatch starts itself.
    """

    def __init__(self, private_instance: bool) -> None:
        super().__init__()
        self.private_instance = private_instance

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Token authentication is enabled"):
            return False
        return not (self.private_instance and message.startswith("Token authentication is disabled"))


def quiet_ray_warnings(private_instance: bool) -> None:
    """Install :class:`_ActionlessRayWarnings` on the logger that emits the token messages (once)."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    for existing in [f for f in logger.filters if isinstance(f, _ActionlessRayWarnings)]:
        logger.removeFilter(existing)
    logger.addFilter(_ActionlessRayWarnings(private_instance))


#: raylet lines forwarded to the driver that provbatch already reports in its own words: a worker that
#: died fails its entity (failures file, entity_failed and worker_lost events); Ray's paragraph about
#: OOM killers and resource isolation, printed once per lost worker, asks nothing more of the user
_RAYLET_REPORTED = ("A worker died or was killed while executing a task",)


def quiet_raylet_messages() -> None:
    """Drop the raylet lines of :data:`_RAYLET_REPORTED` that Ray forwards to the driver (call before ``ray.init``).

    Ray prints them through ``ray._private.worker.print_to_stdstream`` (from
    its error listener thread, and as the log handler ``ray.init`` installs);
    that function is wrapped so that every other line still reaches the
    terminal. Ray internals: a Ray without them keeps its messages (nothing breaks).
    """
    try:
        import ray._private.worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "provbatch_filter", False):
        return

    def print_to_stdstream(data: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and data.get("pid") == "raylet":
            lines = [line for line in data.get("lines", []) if not str(line).startswith(_RAYLET_REPORTED)]
            if not lines:
                return None
            data = {**data, "lines": lines}
        return original(data, *args, **kwargs)

    print_to_stdstream.provbatch_filter = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = print_to_stdstream


def cluster_address(address: str) -> tuple[str, str]:
    """``(host:port, where it came from)`` of the cluster ``address`` means; a UsageError when there is none.

    Where it came from is message text naming options as ``{address}``
    (:meth:`~provbatch.errors.ProvBatchError.naming`).

    ``auto`` means, in this order: RAY_ADDRESS; else the address file the last
    ``ray start`` on this machine wrote; else, when there is no such file, the
    one Ray instance Ray finds among the running processes. A stale address
    file is not replaced by some other live instance (Ray's own ``auto``
    would do that, joining whichever instance, maybe another user's, happens
    to run): the caller probes the address and fails naming the file.
    """
    from ..errors import UsageError, literal

    if address.startswith("ray://"):
        return address[len("ray://"):], "the Ray client address"
    if address != "auto":
        return address, "{address}"
    from_env = os.environ.get("RAY_ADDRESS", "")
    if from_env and from_env != "auto":
        return from_env, "RAY_ADDRESS"
    try:
        from ray._common.utils import get_ray_address_file
        from ray._private.services import get_ray_address_from_environment  # Ray's own resolution of "auto"
    except ImportError:  # another Ray version: let ray.init resolve it
        return "", ""
    address_file = Path(get_ray_address_file(None))
    recorded = address_file.read_text().strip() if address_file.is_file() else ""
    if recorded:
        return recorded, f"the address file {literal(address_file)} of an earlier 'ray start'"
    services = logging.getLogger("ray._private.services")
    level = services.level
    services.setLevel(logging.ERROR)  # its "multiple active Ray instances" note: ray.init repeats it if it connects
    try:
        resolved = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise UsageError.naming("{address} auto: no Ray cluster is running on this machine (start one with "
                                "'ray start --head', or leave out {address} for a private local instance)") from None
    finally:
        services.setLevel(level)
    return str(resolved), "the Ray instance running on this machine"


def probe(address: str, source: str, timeout: float = PROBE_SECONDS) -> None:
    """A UsageError, fast, when nothing listens at ``address`` (``host:port``): Ray would retry for minutes."""
    import socket

    from ..errors import UsageError, literal

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port: Ray reports it itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
    raise UsageError.naming(f"{{address}}: no Ray cluster reachable at {literal(address)} ({literal(reason)}; from {source}); "
                            "start one with 'ray start --head', or leave out {address} for a private local instance")


def init_ray(address: str | None, num_cpus: int | None) -> tuple[bool, str | None]:
    """Connect to ``address`` (or RAY_ADDRESS), reuse a Ray already initialized by
    the caller, or start a private local instance. ``(started, session_dir)``:
    whether this call connected or started it (then the pool shuts it down), and the
    session directory of a private instance it started (None otherwise).

    A cluster address is probed first (a TCP connection to its GCS, at most
    :data:`PROBE_SECONDS`): with a stale address file Ray itself keeps trying
    for minutes, printing only its own warnings.
    """
    import ray

    if ray.is_initialized():
        return False, None
    address = address or os.environ.get("RAY_ADDRESS")
    quiet_ray_warnings(private_instance=not address)
    quiet_raylet_messages()
    if address:  # an existing cluster ("auto": the one `ray start` runs on this machine)
        host_port, source = cluster_address(address)
        if host_port:
            probe(host_port, source)
            if not address.startswith("ray://"):
                address = host_port  # what was probed is what is joined
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        return True, None
    # "local": a private instance, even when a `ray start` cluster runs on this
    # machine (plain ray.init() would join that one, and refuse num_cpus)
    context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                       log_to_driver=True)
    info = getattr(context, "address_info", None) or {}  # RayContext: the addresses and directories of the instance
    return True, str(info.get("session_dir") or "") or None


class RayPool(Pool):
    name = "ray"
    #: One chunk per actor at a time. When an actor dies, Ray fails every task
    #: it held, including a finished one whose reply had not reached the driver
    #: yet, so with two in flight a crash could not be pinned on the chunk that
    #: caused it. Chunks carry ~0.1 s of work, so the gap between them costs ~1%.
    depth = 1

    def __init__(self, n_workers: int | None, config: RunnerConfig, state: Any, options: PoolOptions) -> None:
        import ray

        self._ray = ray
        self.output = []
        self._started, session_dir = init_ray(options.address, n_workers)
        # a private instance dies with the driver, even a SIGKILLed one (see reaper.py)
        self._watchdog = start_watchdog(session_dir) if session_dir else None
        if n_workers is None:
            n_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.n_workers = n_workers
        spec = config.spec
        if spec.artifact and Path(spec.artifact).is_file():
            from ..plugins.cache import artifact_bytes

            spec = spec.with_blob(ray.put(artifact_bytes(spec)))  # checked against its sha256
            config = RunnerConfig(**{**config.__dict__, "spec": spec})
        self.config = config
        self._state_ref = ray.put(state) if state is not None else None
        self._actor_class = ray.remote(num_cpus=1)(RayWorker)
        self.actors = [self._new_actor() for _ in range(n_workers)]
        self.inflight: dict[Any, tuple[int, int, Chunk, Any]] = {}  # ref -> (chunk_id, actor index, chunk, actor)
        self.load = [0] * n_workers
        try:
            ray.get([actor.ready.remote() for actor in self.actors])
        except Exception:
            self.terminate()
            raise

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self.config, [self._state_ref])

    def capacity(self) -> int:
        return sum(self.depth - n for n in self.load)

    def in_flight(self) -> int:
        return len(self.inflight)

    def submit(self, chunk_id: int, chunk: Chunk) -> None:
        index = min(range(self.n_workers), key=self.load.__getitem__)
        ref = self.actors[index].run_chunk.remote(chunk)
        self.inflight[ref] = (chunk_id, index, chunk, self.actors[index])
        self.load[index] += 1

    def wait(self) -> list[Completed]:
        ray = self._ray
        ready, _ = ray.wait(list(self.inflight), num_returns=1)
        ready, _ = ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)  # all that are done
        completed: list[Completed] = []
        for ref in ready:
            chunk_id, index, chunk, actor = self.inflight.pop(ref)
            self.load[index] -= 1
            try:
                outcomes, seconds, output = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                reason = f"Ray worker died: {str(exc).splitlines()[0]}"
                completed.append(Completed(chunk_id, chunk, lost_outcomes(chunk, reason), 0.0))
                self._replace(index, actor, reason)
                continue
            completed.append(Completed(chunk_id, chunk, outcomes, seconds, output))
        return completed

    def _replace(self, index: int, dead: Any, reason: str) -> None:
        """Start a new actor for a dead one, once (its other in-flight chunks fail on their own)."""
        if self.actors[index] is dead:
            self.workers_lost += 1
            self.emit("worker_lost", worker=index, reason=reason)
            self.actors[index] = self._new_actor()

    def finish(self, return_state: bool) -> list[Any]:
        ray = self._ray
        try:
            finished = ray.get([actor.finish.remote(return_state) for actor in self.actors])
        finally:
            self._shutdown()
        states = []
        for state, output in finished:
            states.append(state)
            self.output.extend(output)
        return states if return_state else []

    def terminate(self) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        for actor in self.actors:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: BLE001 - already dead
                pass
        if self._started:
            self._ray.shutdown()
            self._started = False
        if self._watchdog is not None:
            self._watchdog.terminate()  # Ray is down: nothing left to watch
            self._watchdog.wait()
            self._watchdog = None
