"""Files provbatch writes or trusts: sha256 of files, atomic writes, private directories.

Why private directories: the build cache holds libraries provbatch loads into
its own process, and a run directory holds code a rerun executes. Whoever can
write there can make provbatch run their code, so both are the user's alone:

- created ``0700`` (files ``0600``) whatever the umask;
- an existing directory or file there must be owned by the user and not
  writable by group or others, else :class:`~provbatch.errors.UnsafePathError`
  (one line saying how to fix it);
- no symbolic link is followed inside them: every component below the root
  is checked with ``lstat`` and files are opened with ``O_NOFOLLOW``. The
  root itself may be a link the user made (``~/.cache`` on another disk);
  it is resolved once and its target checked.

Writes never leave half a file: a temporary file in the same directory,
then a rename (:func:`atomic_write`) or a hard link that fails when the name
exists (:func:`write_new`, which never overwrites).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath
from typing import IO

from .errors import UnsafePathError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_BLOCK = 1 << 20
_GROUP_OR_OTHER_WRITE = stat.S_IWGRP | stat.S_IWOTH


# --------------------------------------------------------------------------- sha256


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- ownership and modes


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def check_private(path: Path, what: str, st: os.stat_result | None = None) -> os.stat_result:
    """``lstat`` of ``path``, refused unless it is the user's own, not writable by group/others, not a link.

    ``what`` names the tree in the message ("build cache", "run directory").
    """
    if st is None:
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(
            f"{path}: a symbolic link inside the {what}; provbatch follows none there: remove it (rm {path})"
        )
    me = os.geteuid()
    if st.st_uid != me:
        raise UnsafePathError(
            f"{path}: owned by {_owner(st.st_uid)}, not by you ({_owner(me)}); provbatch trusts only a {what} "
            f"of your own: remove it (rm -rf {path}) or use another directory"
        )
    if st.st_mode & _GROUP_OR_OTHER_WRITE:
        raise UnsafePathError(
            f"{path}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}) in the {what}; "
            f"anyone could change what provbatch runs: chmod go-w {path}"
        )
    return st


def private_root(path: str | Path, what: str) -> Path:
    """The root of a private tree: created ``0700`` (missing parents too), or checked when it exists.

    Returned resolved, so that the checks below it see real directories.
    """
    root = Path(path).expanduser()
    if not root.is_absolute():
        root = Path.cwd() / root
    missing = []
    probe = root
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
            os.chmod(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            pass  # made by a concurrent process: checked below when it is the root
    resolved = root.resolve()
    st = os.stat(resolved)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{root}: not a directory (the {what})")
    check_private(resolved, what, st)
    return resolved


def private_dir(root: Path, *parts: str, what: str) -> Path:
    """``root/parts...`` as private directories below a checked ``root``: each made ``0700`` or checked."""
    current = root
    for part in parts:
        safe_component(part, what)
        current = current / part
        try:
            os.mkdir(current, PRIVATE_DIR_MODE)
            os.chmod(current, PRIVATE_DIR_MODE)  # the umask can only take bits away; this also undoes that
            continue
        except FileExistsError:
            pass
        st = check_private(current, what)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(f"{current}: not a directory (in the {what}); remove it (rm {current})")
    return current


def safe_component(name: object, what: str) -> str:
    """One path component: not empty, not ``.`` or ``..``, no ``/`` and no NUL (any other value: refused)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnsafePathError(f"{name!r}: not a plain file or directory name (in the {what})")
    return name


def safe_relative(name: object, what: str) -> PurePosixPath:
    """A relative path from an untrusted record: no absolute path, no ``..``, no empty or ``.`` part."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        raise UnsafePathError(f"{name!r}: not a relative path inside the {what}")
    relative = PurePosixPath(name)
    if relative.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise UnsafePathError(f"{name!r}: not a relative path inside the {what} (absolute, '..' or empty parts)")
    return relative


# --------------------------------------------------------------------------- reading and writing


def read_private(path: Path, what: str) -> bytes:
    """The bytes of a file in a private tree: never through a link, refused unless the user's own."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        if os.path.islink(path):
            check_private(path, what)  # raises: a link
        raise
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        check_private(path, what, st)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{path}: not a regular file (in the {what})")
        return handle.read()


def _write_temporary(path: Path, data: bytes, mode: int) -> Path:
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def atomic_write(path: str | Path, data: bytes | str, mode: int = PRIVATE_FILE_MODE) -> Path:
    """Replace ``path`` with ``data`` (a reader sees the old or the new file, never half of one).

    The rename replaces a link at ``path`` itself, never the file it points to.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temporary = _write_temporary(path, payload, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_new(path: str | Path, data: bytes | str, mode: int = PRIVATE_FILE_MODE) -> Path:
    """Write ``data`` to ``path``, which must not exist (not even as a link): never overwrites.

    Atomic too: the temporary file is hard-linked to the name, which fails when the name exists.
    Raises :class:`FileExistsError` when it does.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temporary = _write_temporary(path, payload, mode)
    try:
        os.link(temporary, path, follow_symlinks=False)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def open_private_append(path: Path, what: str) -> IO[str]:
    """An append-only text handle on a file of a private tree (created ``0600``; never through a link)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    handle = os.fdopen(fd, "a", encoding="utf-8")
    try:
        check_private(path, what, os.fstat(fd))
    except BaseException:
        handle.close()
        raise
    return handle
