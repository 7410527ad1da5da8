"""The PostgreSQL backend's outage state (parley/postgresql/base.py): once a connection could not
be had, the others fail at once, one try at a time goes through, and an answer ends it. The
whole backend against a real server that stops is in parley/tests/test_faults.py."""

import pytest
from psycopg import OperationalError

from parley.postgresql.base import Outage


def test_a_process_whose_server_answers_tries_every_connection():
    outage = Outage()
    outage.admit()
    outage.admit()  # no error: any number may connect at once


def test_after_a_failed_connection_the_others_fail_at_once_saying_why():
    outage = Outage(pause=60)
    outage.failed(OperationalError("connection refused\nIs the server running?"))
    with pytest.raises(
        OperationalError, match=r"has not answered for .* \(last: connection refused\)"
    ):
        outage.admit()


def test_after_the_pause_one_connection_is_tried_while_the_others_still_fail():
    outage = Outage(pause=0)
    outage.failed(OperationalError("connection refused"))
    outage.admit()  # the one try
    with pytest.raises(OperationalError):
        outage.admit()
    outage.failed(OperationalError("connection refused"))  # still away: the next may try
    outage.admit()


def test_an_answer_lets_every_connection_through_again():
    outage = Outage(pause=0)
    outage.failed(OperationalError("connection refused"))
    outage.admit()
    outage.answered()
    outage.admit()
    outage.admit()


def test_a_try_cut_short_without_a_word_from_the_server_lets_the_next_one_try():
    outage = Outage(pause=0)
    outage.failed(OperationalError("connection refused"))
    outage.admit()
    outage.untried()
    outage.admit()
    with pytest.raises(OperationalError):  # still away, and that one is trying
        outage.admit()
