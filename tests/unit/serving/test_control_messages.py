"""What ``pomona serve`` says when Serve reports a failed deployment, and what it reads as
served (no Ray needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pomona.errors import ConfigError
from pomona.serving import control
from pomona.serving.config import APP_NAME, INGRESS_DEPLOYMENT, AppArgs, ModelRoute, Routing
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


def _details(app: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: {"applications": {APP_NAME: app}}


def test_the_routing_is_read_as_serve_applies_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A config `pomona serve build` wrote has no user_config: the deployment's is the one the
    # application builder planned, which Serve reports among the applied settings.
    args = AppArgs(registry="/r", references=["digits"])
    routing = Routing(
        models={"digits": ModelRoute(targets={"production": 1}, split={"production": 100})}
    )
    app = {
        "status": "RUNNING",
        "message": "",
        "deployed_app_config": {
            "args": args.model_dump(mode="json"),
            "deployments": [{"name": INGRESS_DEPLOYMENT, "max_queued_requests": 64}],
        },
        "deployments": {
            INGRESS_DEPLOYMENT: {
                "status": "HEALTHY",
                "replicas": [{"state": "RUNNING"}],
                "target_num_replicas": 1,
                "deployment_config": {
                    "max_ongoing_requests": 32,
                    "user_config": routing.model_dump(mode="json"),
                },
            }
        },
    }
    monkeypatch.setattr(control, "_details", _details(app))
    state = control.state()
    assert (state.args, state.routing, state.max_ongoing_requests) == (args, routing, 32)


def test_an_application_that_failed_to_build_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    app = {
        "status": "DEPLOY_FAILED",
        "message": "Deploying app 'pomona' failed with exception:\nTraceback (most recent call "
        "last):\n  ...\npomona.errors.ModelNotFoundError: no model 'digits' in registry /r; "
        "models: none\n",
        "deployed_app_config": {"args": {"registry": "/r", "references": ["digits"]}},
        "deployments": {},
    }
    monkeypatch.setattr(control, "_details", _details(app))
    with pytest.raises(ConfigError) as failed:
        control.state()
    assert str(failed.value) == (
        "the pomona Serve application is DEPLOY_FAILED: ModelNotFoundError: no model 'digits' "
        "in registry /r; models: none"
    )
