"""The store's hand-written text forms, checked against the library forms they stand in for:
the JSON arrays SQLite's json_each reads (json.dumps), and URLs with their password hidden
(SQLAlchemy's make_url)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from sqlalchemy.engine import make_url

from provbatch.store.url import display_url, new_sqlite_file
from provbatch.store.writer import _json_array, _own_keys_array

TEXTS = [
    ["entity_00000001", "entity_00000002"], ["15", "7"], ["a"], [],
    ['say "hi"', "x"], ["back\\slash"], ["tab\there"], ["bell\x07"], ["é", "日本"], ["line\u2028sep"],
    ["a", None], ["", "b"], ["\udcff"],
]


@pytest.mark.parametrize("texts", TEXTS, ids=repr)
def test_json_arrays_read_back_by_sqlite_as_the_texts_themselves(texts: list) -> None:
    array = _json_array(texts)
    if "\udcff" not in "".join(text or "" for text in texts):
        assert json.loads(array) == texts
        with sqlite3.connect(":memory:") as db:
            assert [value for (value,) in db.execute("SELECT value FROM json_each(?) ORDER BY key", (array,))] == texts
    else:  # a surrogate escape is not UTF-8: json.dumps' form, which the driver refuses as it did before
        assert array == json.dumps(texts, ensure_ascii=False)


@pytest.mark.parametrize("names, expected", [
    (["a", "b c"], '["a","b c"]'),
    (["x" * 255], json.dumps(["x" * 255])),
    (["x" * 256], None),  # hashed: a name longer than a key
    (["trailing "], None),  # hashed: MariaDB would compare it equal to "trailing"
    (["a", "tab\tin"], None),
    (['quote"'], None),  # its own key, but its JSON needs an escape: the exact way
    ([], None),
])
def test_own_keys_array_only_when_each_name_is_its_key_and_needs_no_escape(names: list, expected: str | None) -> None:
    assert _own_keys_array(names) == expected


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://provbatch:secret@127.0.0.1:5432/store",
    "postgresql+psycopg://provbatch:se/cr:et@127.0.0.1/store",
    "mysql+pymysql://root:p%40ss@localhost:3306/db",
    "mysql+pymysql://root@localhost/db",
    "postgresql://user:pw@host",
    "sqlite:////tmp/a@b:c/store.sqlite",
    "sqlite:///relative.sqlite",
])
def test_display_url_hides_the_password_as_sqlalchemy_does(url: str) -> None:
    assert display_url(url) == make_url(url).render_as_string(hide_password=True)


def test_display_url_keeps_a_query_as_given_and_a_plain_path() -> None:
    url = "postgresql+psycopg://u:pw@h/db?host=/var/run/postgresql"
    assert display_url(url) == "postgresql+psycopg://u:***@h/db?host=/var/run/postgresql"
    assert display_url("store.sqlite") == "store.sqlite"


def test_new_sqlite_file_only_for_an_sqlite_file_not_there_yet_in_a_folder_that_is(tmp_path, monkeypatch) -> None:
    existing = tmp_path / "old.sqlite"
    existing.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert [new_sqlite_file(url) for url in (
        str(tmp_path / "new.sqlite"), "new.sqlite", f"sqlite:///{tmp_path}/new.sqlite", "sqlite:///new.sqlite",
        f"sqlite+pysqlite:///{tmp_path}/new.sqlite",
    )] == [True] * 5
    assert [new_sqlite_file(url) for url in (
        str(existing), "old.sqlite", str(tmp_path / "missing" / "new.sqlite"), f"sqlite:///{tmp_path}/new.sqlite?mode=ro",
        "sqlite://", "sqlite:///:memory:", "postgresql://me@localhost/store", "mysql://me:secret@localhost/store",
    )] == [False] * 8
