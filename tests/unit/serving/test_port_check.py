"""`pomona serve` refuses a port something listens on, and only that (no Ray)."""

from __future__ import annotations

import socket

import pytest

from pomona.cli.serve import _check_free
from pomona.errors import ConfigError


def test_a_port_something_listens_on_is_refused_with_the_option_to_change() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127.0.0.1:{port} .*choose another --port$"):
            _check_free("127.0.0.1", port, "--port")


def test_a_port_whose_server_just_stopped_is_free() -> None:
    """Its last connection waits out TIME_WAIT; Ray's and Serve's servers bind it all the same."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            connection, _ = server.accept()
            connection.close()  # the server closes first: its side goes to TIME_WAIT
            client.recv(1)
    _check_free("127.0.0.1", port, "--metrics-port")
