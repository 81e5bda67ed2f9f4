"""The torch process group, with its rendezvous store listening on the node's address only.

Ray Train's ``TorchConfig`` lets rank 0 start torch's ``TCPStore`` through ``env://``, and torch
binds that server to every interface (``*:PORT``) whatever ``MASTER_ADDR`` says; no option or
environment variable changes that. Here rank 0 opens the listening socket itself, on the address
Ray gave its node, and hands it to the store (``master_listen_fd``). On the embedded local Ray
that address is 127.0.0.1, so nothing outside the machine can reach the store; on a cluster it is
the node's own address, which the other nodes' workers connect to as before.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ray
import torch.distributed as dist
from ray.train._internal.utils import get_address_and_port
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _TorchBackend


@dataclass
class NodeAddressTorchConfig(TorchConfig):
    """A ``TorchConfig`` whose rendezvous store listens on rank 0's Ray node address only."""

    @property
    def backend_cls(self) -> type[_TorchBackend]:
        return _NodeAddressTorchBackend


class _NodeAddressTorchBackend(_TorchBackend):
    """Ray's torch backend with its own process-group start (Ray's ``on_start`` without the
    ``env://`` rendezvous and the TPU branches); shutdown is Ray's."""

    def on_start(self, worker_group: Any, backend_config: TorchConfig) -> None:
        # TorchTrainer has filled in the backend (gloo, or nccl for GPU workers) by now.
        address, port = worker_group.execute_single(0, get_address_and_port)
        worker_group.execute(_set_torch_distributed_env_vars)
        world_size = len(worker_group)
        ray.get(
            [
                worker_group.execute_single_async(
                    rank,
                    _init_process_group,
                    backend=backend_config.backend,
                    world_rank=rank,
                    world_size=world_size,
                    address=address,
                    port=port,
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(world_size)
            ]
        )


def _init_process_group(
    backend: str, world_rank: int, world_size: int, address: str, port: int, timeout_s: int
) -> None:
    timeout = timedelta(seconds=timeout_s)
    listen_fd = _listen_on(address, port) if world_rank == 0 else None
    store = dist.TCPStore(
        address,
        port,
        world_size,
        is_master=world_rank == 0,
        timeout=timeout,
        master_listen_fd=listen_fd,
        use_libuv=True,
    )
    dist.init_process_group(
        backend=backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout
    )


def _listen_on(address: str, port: int) -> int:
    """A listening TCP socket bound to ``address:port``; its file descriptor, now the caller's."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    server = socket.create_server((address, port), family=family)
    # detach(): the store owns the descriptor from here; closing the Python object must not
    # close it under the store's feet.
    return server.detach()
