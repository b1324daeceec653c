"""INGEST_MAX_NAME_LENGTH must fit the columns names are stored in (a system check)."""

from __future__ import annotations

from perfdash.api.checks import name_limit_fits_the_columns


def test_the_default_name_limit_fits_the_columns(settings):
    settings.INGEST_MAX_NAME_LENGTH = 128
    assert name_limit_fits_the_columns() == []


def test_a_shorter_name_limit_is_fine(settings):
    settings.INGEST_MAX_NAME_LENGTH = 64
    assert name_limit_fits_the_columns() == []


def test_a_name_limit_longer_than_the_columns_is_an_error(settings):
    settings.INGEST_MAX_NAME_LENGTH = 129
    [problem] = name_limit_fits_the_columns()
    assert problem.id == "perfdash.E002"
    assert "INGEST_MAX_NAME_LENGTH is 129" in problem.msg and "128 characters" in problem.msg
