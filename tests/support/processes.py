"""Processes a test started: found through /proc so a test kills only its own."""

from __future__ import annotations

import os
from pathlib import Path


def train_worker_pids() -> list[int]:
    """PIDs of RayTrainWorker processes descended from this test process (ours to kill)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            todo.append(child)
            try:
                if Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"ray::RayTrainWorker"):
                    found.append(child)
            except OSError:
                continue
    return found
