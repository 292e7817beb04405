"""A real single-node Slurm cluster in a directory of its own, for the tests and the benchmarks.

Debian's munged, slurmctld and slurmd are started with their own key, sockets, ports, state,
spool, logs and PID files under one directory, so that several clusters (other engineers' test
runs) can live on one machine without sharing anything; :meth:`SlurmCluster.stop` stops exactly
the daemons this cluster started, by their PID files. When a daemon does not come up, the error
carries its log tail: a test run that needs Slurm fails loudly instead of skipping.

The configuration follows what was measured on this machine (issue 19): munged wants its socket
directory 755 and the key 600; proctrack/linuxproc and task/none need no cgroups; cons_tres with
CR_Core gives one task per configured CPU and ``config_overrides`` lets the node announce more
CPUs than it has (more concurrent tasks); without slurmdbd, jobcomp/filetxt lets ``sacct -c``
read finished jobs, and ``MinJobAge`` keeps them in ``squeue -t all`` / ``scontrol show job``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

#: the daemons and client commands a cluster needs; missing ones are named in the error
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "sacct")
NODE = "pbnode"
PARTITION = "debug"


class ClusterError(RuntimeError):
    """The cluster could not be started; the message carries the daemons' log tails."""


def free_port() -> int:
    """A TCP port free on the loopback now (the usual bind-to-0 probe)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path.name}: no log)"
    return f"--- {path.name} (last {min(lines, len(text))} lines)\n" + "\n".join(text[-lines:])


def _find(program: str) -> str:
    for folder in (*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/sbin"):
        candidate = Path(folder) / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ClusterError(f"{program} not found (Debian packages slurmctld slurmd slurm-client munge; `make system-deps`)")


def _real_memory_mb() -> int:
    """What ``slurmd -C`` reports (RealMemory must not exceed it), capped: memory is not consumable here."""
    out = subprocess.run([_find("slurmd"), "-C"], capture_output=True, text=True, timeout=30, check=False).stdout
    for field in out.split():
        if field.startswith("RealMemory="):
            return min(int(field.split("=", 1)[1]), 8192)
    return 1024


class SlurmCluster:
    """munged + slurmctld + slurmd under ``root``; ``env`` is what a client needs (SLURM_CONF, PATH)."""

    def __init__(self, root: Path, cpus: int = 8, min_job_age: int = 7200) -> None:
        self.root = Path(root)
        self.cpus = cpus
        self.min_job_age = min_job_age
        self.conf = self.root / "slurm.conf"
        self.munge_dir = self.root / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.logs = {name: self.root / f"{name}.log" for name in ("munged", "slurmctld", "slurmd")}
        self.pid_files = {name: self.root / f"{name}.pid" for name in ("munged", "slurmctld", "slurmd")}
        self.partition = PARTITION
        self.env: dict[str, str] = {}

    # -- start ----------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> SlurmCluster:
        """Start the three daemons and wait until the node is idle; on failure stop what started."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        for program in CLIENTS:
            _find(program)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(exist_ok=True)
        self._start_munged()
        self._write_conf()
        self.env = {"SLURM_CONF": str(self.conf)}
        environ = {**os.environ, **self.env}
        for daemon, args in (("slurmctld", ["-c"]), ("slurmd", ["-N", NODE])):
            proc = subprocess.run([_find(daemon), *args, "-f", str(self.conf)], env=environ,
                                  capture_output=True, text=True, timeout=60, check=False)
            if proc.returncode != 0:
                raise ClusterError(f"{daemon} did not start (exit {proc.returncode}): {proc.stderr.strip()}\n"
                                   + self.log_tails())
        self._wait_idle(timeout)

    def _start_munged(self) -> None:
        self.munge_dir.mkdir(exist_ok=True)
        os.chmod(self.munge_dir, 0o755)  # munged refuses a socket directory writable by others
        key = self.root / "munge.key"
        if not key.exists():
            subprocess.run([_find("mungekey"), "--create", f"--keyfile={key}"], check=True,
                           capture_output=True, timeout=30)
        os.chmod(key, 0o600)
        proc = subprocess.run(
            [_find("munged"), f"--socket={self.munge_socket}", f"--key-file={key}",
             f"--pid-file={self.pid_files['munged']}", f"--log-file={self.logs['munged']}",
             f"--seed-file={self.root / 'munged.seed'}", "--force"],
            capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise ClusterError(f"munged did not start (exit {proc.returncode}): {proc.stderr.strip()}\n"
                               + _tail(self.logs["munged"]))
        self._wait_for(lambda: self.munge_socket.exists(), 15, "munged socket")

    def _write_conf(self) -> None:
        host = socket.gethostname()
        r = self.root
        self.conf.write_text("\n".join([
            f"ClusterName=pb{os.getpid()}x{free_port()}",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={self.pid_files['slurmctld']}",
            f"SlurmdPidFile={self.pid_files['slurmd']}",
            f"SlurmctldLogFile={self.logs['slurmctld']}",
            f"SlurmdLogFile={self.logs['slurmd']}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={r / 'jobcomp.txt'}",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
            "SlurmdParameters=config_overrides",
            f"MinJobAge={self.min_job_age}",
            "MaxArraySize=10001",
            "MaxJobCount=50000",
            "ReturnToService=2",
            "MpiDefault=none",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            "Waittime=0",
            (f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} "
             f"RealMemory={_real_memory_mb()} State=UNKNOWN"),
            f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def _wait_idle(self, timeout: float) -> None:
        def idle() -> bool:
            for name in ("slurmctld", "slurmd"):
                if self.pid_files[name].exists() and not self._alive(name):
                    raise ClusterError(f"{name} exited during start-up\n" + self.log_tails())
            proc = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
            return proc.returncode == 0 and proc.stdout.strip() == "idle"

        self._wait_for(idle, timeout, "node idle in sinfo")

    def _wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n" + self.log_tails())

    # -- use ------------------------------------------------------------------------------------

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        proc = subprocess.run(list(args), env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def log_tails(self) -> str:
        return "\n".join(_tail(path) for path in self.logs.values())

    def cancel_all(self) -> None:
        """Cancel every job of this cluster (between tests, and before stopping)."""
        if self.conf.exists() and self._alive("slurmctld"):
            self.run("scancel", "--user", str(os.getuid()), check=False)

    # -- stop -----------------------------------------------------------------------------------

    def _pid(self, name: str) -> int | None:
        try:
            return int(self.pid_files[name].read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _alive(self, name: str) -> bool:
        pid = self._pid(name)
        if pid is None:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie waiting for init is gone

    def stop(self) -> None:
        """Cancel the jobs, then stop slurmd, slurmctld and munged by their PID files (TERM, then KILL)."""
        try:
            self.cancel_all()
        except (OSError, subprocess.SubprocessError):
            pass
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self._pid(name)
            if pid is None:
                continue
            for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and self._alive(name):
                    time.sleep(0.1)
                if not self._alive(name):
                    break
        self._kill_leftover_steps()

    def _kill_leftover_steps(self) -> None:
        """slurmstepd processes of this cluster's spool dir that outlived slurmd (killed by pid, not name)."""
        spool = str(self.root / "spool")
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                cmdline = (proc_dir / "cmdline").read_bytes().decode(errors="replace")
                environ = (proc_dir / "environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "slurmstepd" in cmdline and (spool in environ or str(self.conf) in environ):
                try:
                    os.kill(int(proc_dir.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> SlurmCluster:  # noqa: PYI034
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def slurm_available() -> bool:
    """True when the daemons and clients are installed (the test run fails, not skips, otherwise)."""
    return all(shutil.which(p) or Path("/usr/sbin", p).exists() for p in (*DAEMONS, *CLIENTS))
