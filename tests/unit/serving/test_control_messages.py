"""What ``pomona serve`` says when Serve reports a failed deployment (no Ray needed)."""

from __future__ import annotations

from pomona.serving.control import _last_line

_FAILED = (
    "The deployment failed to start 3 times in a row. See controller logs for details. Error:\n"
    "\x1b[36mray::ServeReplica:pomona:api.initialize_and_get_metadata()\x1b[39m (pid=1)\n"
    '  File "pomona/registry/version.py", line 174, in verify_files\n'
    "    raise CheckpointError(\n"
    "pomona.errors.CheckpointError: digits:2 in /r: model.safetensors has sha256 a but "
    "version.json records b\n"
)


def test_a_failed_replica_is_summed_up_by_its_exception() -> None:
    assert _last_line(_FAILED) == (
        "CheckpointError: digits:2 in /r: model.safetensors has sha256 a but version.json records b"
    )


def test_other_messages_keep_their_last_line_as_written() -> None:
    assert _last_line("Deploying 1 replica.\n") == "Deploying 1 replica."
    assert _last_line("model.safetensors: missing") == "model.safetensors: missing"
    assert _last_line(" \n") == ""
