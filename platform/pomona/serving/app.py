"""The application builder Serve imports: ``import_path: pomona.serving.app:build_app``."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from pomona.config import validate
from pomona.serving.api import Api
from pomona.serving.config import INGRESS_DEPLOYMENT, AppArgs
from pomona.serving.plan import plan_routing


def build_app(args: dict[str, Any]) -> Application:
    """The ``api`` deployment, which answers HTTP and holds the served model versions.

    Serve calls this once per deploy of the application's code and ``args`` (in a task of its
    own), so the routing planned here from the registry, every model batching with
    ``args.batch``, is what the references mean when Serve deploys: a config that
    ``pomona serve build`` wrote serves the aliases of the registry it is deployed against.
    It is the deployment's default ``user_config``; one given in the Serve config's
    ``deployments`` section replaces it (``pomona serve`` deploys the routing it planned and
    verified, and ``promote``, ``traffic`` and ``batch`` change it there). Scaling and queues
    come from that section too (see :func:`pomona.serving.plan.serve_config`), so an operator
    can change them in the YAML without touching code.

    Raises:
        ConfigError: ``args`` is not a valid :class:`AppArgs`.
        ModelNotFoundError: a reference does not resolve in the registry. Serve then reports
            the application DEPLOY_FAILED, with this error, and builds it again only when a
            changed config is deployed (Ray 2.60 retries the build task 3 times, at once).
    """
    app_args = validate(AppArgs, args, "serve application args")
    routing = plan_routing(app_args, batch=app_args.batch)
    return Api.options(name=INGRESS_DEPLOYMENT, user_config=routing.model_dump(mode="json")).bind(
        app_args.model_dump(mode="json")
    )
