"""The failures TSV: ``entity<TAB>attempts<TAB>error_class<TAB>message``, one line per failed entity.

New failures are appended as they become final, so a killed run keeps them;
at the end of the run the file is rewritten (atomically) without the
entities that have since succeeded, keeping the latest failure of each.
``--retry-failed`` computes just the entities listed here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..contract.results import one_line
from ..errors import UsageError

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def escape_entity(entity: str) -> str:
    """An entity as one TSV field, reversibly (an entity that failed for holding a TAB or LF must be found again)."""
    if "\\" not in entity and "\t" not in entity and "\n" not in entity and "\r" not in entity:
        return entity
    return "".join(_ESCAPES.get(char, char) for char in entity)


def unescape_entity(field: str) -> str:
    if "\\" not in field:
        return field
    out: list[str] = []
    chars = iter(field)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(_UNESCAPES.get(following, "\\" + following))
        else:
            out.append(char)
    return "".join(out)


def read_failures(path: Path) -> dict[str, tuple[int, str, str]]:
    """entity -> (attempts, error_class, message), the last line of an entity winning."""
    failures: dict[str, tuple[int, str, str]] = {}
    if not path.is_file():
        return failures
    with open(path, encoding="utf-8", errors="replace") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                continue  # torn by a killed run
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4 or not fields[1].isdigit():
                raise UsageError(f"{path}:{lineno}: not a failures file line (entity, attempts, error_class, message)")
            failures[unescape_entity(fields[0])] = (int(fields[1]), fields[2], fields[3])
    return failures


class FailuresFile:
    """The failures of a batch: the ones from earlier runs, and this run's."""

    def __init__(self, path: str | Path, shown: str | Path | None = None) -> None:
        self.path = Path(path)
        #: the path as the user gave it (what records and messages show); ``path`` is what is opened
        self.shown = str(path if shown is None else shown)
        self.entries = read_failures(self.path)
        self._handle: IO[str] | None = None

    def __contains__(self, entity: str) -> bool:
        return entity in self.entries

    def entities(self) -> Iterator[str]:
        return iter(list(self.entries))

    def record(self, entity: str, attempts: int, error_class: str, message: str) -> None:
        # one field of the failures file: a TAB would split it
        entry = (attempts, error_class, one_line(message.replace("\t", " "))[:2000])
        self.entries[entity] = entry
        if self._handle is None:
            try:
                # kept open between records (each one flushed), closed by close()
                self._handle = open(self.path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            except OSError as exc:
                raise UsageError(f"{self.shown}: cannot write the failures file: {exc.strerror or exc}") from exc
        self._handle.write(f"{escape_entity(entity)}\t{entry[0]}\t{entry[1]}\t{entry[2]}\n")
        self._handle.flush()

    def succeeded(self, entity: str) -> None:
        self.entries.pop(entity, None)

    def close(self) -> None:
        """Rewrite the file with the failures still standing (removed when there are none)."""
        if self._handle is not None:
            self._handle.close()
        if not self.entries:
            if self.path.exists():
                self.path.unlink()
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as handle:
            for entity, (attempts, error_class, message) in self.entries.items():
                handle.write(f"{escape_entity(entity)}\t{attempts}\t{error_class}\t{message}\n")
        os.replace(tmp, self.path)
