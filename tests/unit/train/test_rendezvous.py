"""The process group's rendezvous store listens on the address it is given, not on all."""

from __future__ import annotations

import socket

import psutil
import torch
import torch.distributed as dist

from pomona.train.rendezvous import _init_process_group


def listeners() -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


def test_a_one_rank_group_listens_on_loopback_only() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    before = listeners()
    _init_process_group(
        backend="gloo", world_rank=0, world_size=1, address="127.0.0.1", port=port, timeout_s=30
    )
    try:
        opened = listeners() - before
        tensor = torch.ones(2)
        dist.all_reduce(tensor)  # the group works
        assert torch.equal(tensor, torch.ones(2))
    finally:
        dist.destroy_process_group()
    assert ("127.0.0.1", port) in opened  # the store, where it was told to listen
    assert not {entry for entry in opened if entry[0] in ("0.0.0.0", "::")}, opened
