"""The Ray job entrypoints in ``jobs/``: one script per pomona command, run as ``python jobs/X``.

Job submission (``pomona submit``) and the KubeRay RayJobs build their command lines here, so
both name the same scripts.
"""

from __future__ import annotations

import shlex
from typing import Literal

JobCommand = Literal["train", "sweep", "ingest", "evaluate"]
#: pomona command -> its script under ``jobs/`` (each runs ``pomona <command> ARGS``).
JOB_SCRIPTS: dict[str, str] = {
    "train": "jobs/train.py",
    "sweep": "jobs/sweep.py",
    "ingest": "jobs/ingest.py",
    "evaluate": "jobs/evaluate.py",
}


def job_entrypoint(command: JobCommand, args: list[str]) -> str:
    """``python jobs/<command>.py ARGS`` as one shell-quoted command line."""
    return shlex.join(["python", JOB_SCRIPTS[command], *args])
