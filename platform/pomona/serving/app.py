"""The application builder Serve imports: ``import_path: pomona.serving.app:build_app``."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from pomona.config import validate
from pomona.serving.api import Api
from pomona.serving.config import INGRESS_DEPLOYMENT, AppArgs


def build_app(args: dict[str, Any]) -> Application:
    """The ``api`` deployment, which answers HTTP and holds the served model versions.

    Scaling, queues and the ``user_config`` (routes, batch settings) come from the Serve
    config's ``deployments`` section (see :func:`pomona.serving.plan.serve_config`), so an
    operator can change them in the YAML without touching code.

    Raises:
        ConfigError: ``args`` is not a valid :class:`AppArgs`.
    """
    app_args = validate(AppArgs, args, "serve application args")
    return Api.options(name=INGRESS_DEPLOYMENT).bind(app_args.model_dump(mode="json"))
