from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.postgres import PostgresServer


@contextmanager
def engine(url: str) -> Iterator[Engine]:
    opened = sa.create_engine(url)
    try:
        yield opened
    finally:
        opened.dispose()


def tables(url: str) -> list[str]:
    with engine(url) as db, db.connect() as connection:
        return sa.inspect(connection).get_table_names()


def test_two_new_databases_are_separate_and_empty(postgres: PostgresServer) -> None:
    first, second = postgres.new_database(), postgres.new_database()
    assert first != second
    assert tables(first) == [] and tables(second) == []
    with engine(first) as db, db.begin() as connection:
        connection.execute(sa.text("CREATE TABLE only_here (id integer)"))
    assert tables(first) == ["only_here"]
    assert tables(second) == []


def test_a_url_works_with_sqlalchemy_and_psycopg_as_an_ordinary_role(postgres_url: str) -> None:
    with engine(postgres_url) as db, db.connect() as connection:
        assert db.dialect.driver == "psycopg"
        assert connection.execute(sa.text("SELECT 1")).scalar_one() == 1
        user, superuser = connection.execute(sa.text("SELECT current_user, current_setting('is_superuser')")).one()
    assert (user, superuser) == ("mailtriage", "off")


def test_cutting_a_databases_connections_makes_an_open_one_fail_and_a_new_one_work(
    postgres: PostgresServer, postgres_url: str
) -> None:
    other = postgres.new_database()
    with engine(postgres_url) as db, engine(other) as other_db:
        with db.connect() as cut, db.connect() as also_cut, other_db.connect() as kept:
            for connection in (cut, also_cut, kept):
                connection.execute(sa.text("SELECT 1"))
            assert postgres.terminate(postgres_url) == 2
            for connection in (cut, also_cut):
                with pytest.raises(sa.exc.OperationalError, match="terminating connection"):
                    connection.execute(sa.text("SELECT 1"))
            assert kept.execute(sa.text("SELECT 1")).scalar_one() == 1  # another database's are left alone
        with db.connect() as fresh:
            assert fresh.execute(sa.text("SELECT 1")).scalar_one() == 1
    assert postgres.terminate(postgres_url) == 0
