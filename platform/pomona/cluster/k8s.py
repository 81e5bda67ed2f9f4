"""KubeRay manifests for pomona, rendered from one set of settings.

:func:`render` turns :class:`K8sSettings` and the Serve config that ``pomona serve build`` writes
into a kustomize layout (``base/`` + ``overlays/cpu`` + ``overlays/gpu``): a long-lived
RayCluster, RayJobs that train and sweep on a cluster of their own, a RayService serving the
registry's ``production`` model, a PodMonitor for Prometheus and a shared volume claim. Every
Ray pod comes from :func:`cluster_spec`, so the four custom resources never disagree on the
image, the ports, the storage mount or the authentication.

Security defaults: Ray token authentication is on (KubeRay ``authOptions``, token read from a
Secret the operator does not generate, so it stays the same across RayService upgrades and the
people who submit jobs can read it), and the head's services are ``ClusterIP`` with no Ingress,
so the dashboard and the Jobs API are reachable only from inside the cluster or through
``kubectl port-forward``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

import pomona
from pomona.cluster.entrypoints import job_entrypoint
from pomona.config import StrictModel
from pomona.errors import ConfigError
from pomona.serving.config import serving_env
from pomona.serving.plan import reserving

RAY_VERSION = "2.60.0"
#: Ray's metrics export port (Ray and Serve metrics), the autoscaler's and the dashboard's.
METRICS_PORTS = {"metrics": 8080, "as-metrics": 44217, "dash-metrics": 44227}
HEAD_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000}
#: CPUs each pomona Serve replica of the RayService reserves when its config reserves none.
REPLICA_CPUS = 1
#: Where the Dockerfile installs the project; RayJobs run their entrypoints from here.
PROJECT_DIR = "/home/ray/pomona"
APP_LABEL = {"app.kubernetes.io/name": "pomona"}
Variant = Literal["cpu", "gpu"]
VARIANTS: tuple[Variant, ...] = ("cpu", "gpu")


#: The rules of the settings that name things, each a pattern and what a value of it is. A
#: repository is named as Docker names it: an optional registry host (and port), then lowercase
#: path components.
_NAME_RULES = {
    "image": (
        re.compile(
            r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
        ),
        "a container repository: an optional registry host (and :port), then lowercase path "
        "components of letters, digits, '.', '_' and '-' separated by '/' (e.g. "
        "ghcr.io/team/pomona); the tag goes in --tag",
    ),
    "tag": (
        re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}"),
        "an image tag: up to 101 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
    ),
    "dataset": (
        re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*"),
        "a folder name under STORAGE/datasets: letters, digits, '_', '.' and '-', starting "
        "with a letter or digit",
    ),
}


class K8sSettings(StrictModel):
    """What ``pomona k8s render`` needs; every field has a default.

    Attributes:
        name: name of the RayCluster; the RayJobs and the RayService derive theirs from it.
        image: container repository of the project image (the Dockerfile's output), no tag.
        tag: image tag; the CPU variant runs ``<tag>-cpu``, the GPU overlay ``<tag>-gpu``.
        workers: worker pods a cluster starts with, and the training jobs' ``--workers``.
        max_workers: the autoscaler's ceiling for worker pods.
        worker_cpus: CPUs requested (and limited to) per worker pod.
        worker_memory: memory per worker pod, a Kubernetes quantity.
        head_cpus: CPUs of the head pod; the head runs no tasks (``num-cpus: 0``), only Ray's
            control plane, job drivers and Serve's proxy.
        head_memory: memory of the head pod.
        gpus_per_worker: GPUs per worker pod in the GPU overlay.
        storage: where datasets, runs, sweeps and the registry live on every pod: an absolute
            path (``file://`` accepted) that a ReadWriteMany volume claim is mounted at (sweeps
            need a directory; see :mod:`pomona.location` for object-store URIs).
        storage_size: size requested by that claim.
        auth_secret: Secret holding the Ray token under the key ``auth_token``.
        serve_config: the Serve config YAML file (``pomona serve build`` writes it).
        dataset: dataset directory name under ``<storage>/datasets`` the jobs train on.
    """

    name: str = Field("pomona", pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
    image: str = "pomona"
    tag: str = pomona.__version__
    workers: PositiveInt = 2
    max_workers: PositiveInt = 4
    worker_cpus: PositiveInt = 2
    worker_memory: str = Field("4Gi", pattern=r"^[0-9]+(Mi|Gi)$")
    head_cpus: PositiveInt = 2
    head_memory: str = Field("4Gi", pattern=r"^[0-9]+(Mi|Gi)$")
    gpus_per_worker: PositiveInt = 1
    storage: str = "/mnt/pomona"
    storage_size: str = Field("20Gi", pattern=r"^[0-9]+(Mi|Gi|Ti)$")
    auth_secret: str = Field("pomona-ray-auth", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    serve_config: Path = Path("serve/pomona.yaml")
    dataset: str = "digits"

    @field_validator("image", "tag", "dataset")
    @classmethod
    def _named_as_rule(cls, value: str, info: ValidationInfo) -> str:
        pattern, rule = _NAME_RULES[info.field_name]
        if not pattern.fullmatch(value):
            raise ValueError(f"{info.field_name} {value!r} is not {rule}")
        return value

    @field_validator("storage")
    @classmethod
    def _mountable(cls, storage: str) -> str:
        path = storage.removeprefix("file://")
        if "://" in path or not path.startswith("/"):
            raise ValueError(
                f"storage {storage!r} must be an absolute path (or file:// URI) that the "
                "manifests mount a shared volume at: the sweep RayJob keeps Ray Tune's state "
                "in a directory; datasets, runs and the registry may also be s3:// or gs:// "
                "URIs given to pomona directly"
            )
        return str(PurePosixPath(path))

    @model_validator(mode="after")
    def _room_to_start(self) -> K8sSettings:
        if self.max_workers < self.workers:
            raise ValueError(
                f"max_workers {self.max_workers} is below workers {self.workers}: the "
                "autoscaler's ceiling must allow the worker pods a cluster starts with"
            )
        return self

    def image_ref(self, variant: Variant) -> str:
        """The image every Ray container of ``variant`` runs."""
        return f"{self.image}:{self.tag}-{variant}"

    def path(self, *parts: str) -> str:
        """A path under :attr:`storage`."""
        return str(PurePosixPath(self.storage, *parts))


def _head_and_worker_env(settings: K8sSettings, env: Mapping[str, str]) -> list[dict[str, str]]:
    return [
        {"name": "POMONA_REGISTRY", "value": settings.path("registry")},
        {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
        *({"name": name, "value": value} for name, value in sorted(env.items())),
    ]


def _container(
    settings: K8sSettings,
    name: str,
    cpus: int,
    memory: str,
    ports: dict[str, int],
    env: Mapping[str, str],
) -> dict[str, Any]:
    resources = {"cpu": str(cpus), "memory": memory}
    return {
        "name": name,
        "image": settings.image_ref("cpu"),
        "imagePullPolicy": "IfNotPresent",
        "env": _head_and_worker_env(settings, env),
        "ports": [{"name": port_name, "containerPort": port} for port_name, port in ports.items()],
        # Requests equal limits: Ray sizes its resources from the limits, and the scheduler
        # then never packs more Ray work onto a node than it can run.
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [{"name": "storage", "mountPath": settings.storage}],
    }


def _pod_template(settings: K8sSettings, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"labels": dict(APP_LABEL)},
        "spec": {
            "containers": [container],
            "volumes": [
                {"name": "storage", "persistentVolumeClaim": {"claimName": claim_name(settings)}}
            ],
        },
    }


def claim_name(settings: K8sSettings) -> str:
    """Name of the shared volume claim mounted at :attr:`K8sSettings.storage`."""
    return f"{settings.name}-storage"


def cluster_spec(settings: K8sSettings, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The RayCluster ``spec`` shared by the RayCluster, the RayJobs and the RayService, with
    ``env`` added to every pod's environment."""
    env = env or {}
    head = _container(
        settings, "ray-head", settings.head_cpus, settings.head_memory,
        {**HEAD_PORTS, **METRICS_PORTS}, env,
    )  # fmt: skip
    worker = _container(
        settings, "ray-worker", settings.worker_cpus, settings.worker_memory,
        {"metrics": METRICS_PORTS["metrics"]}, env,
    )  # fmt: skip
    return {
        "rayVersion": RAY_VERSION,
        "authOptions": {"mode": "token", "secretName": settings.auth_secret},
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": 120},
        "headGroupSpec": {
            "serviceType": "ClusterIP",
            "enableIngress": False,
            # The dashboard listens on the pod's address so port-forward and in-cluster clients
            # reach it; the ClusterIP service keeps it off the internet.
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": _pod_template(settings, head),
        },
        "workerGroupSpecs": [
            {
                "groupName": "workers",
                "replicas": settings.workers,
                "minReplicas": settings.workers,
                "maxReplicas": max(settings.max_workers, settings.workers),
                "rayStartParams": {},
                "template": _pod_template(settings, worker),
            }
        ],
    }


def _metadata(name: str) -> dict[str, Any]:
    return {"name": name, "labels": dict(APP_LABEL)}


def training_args(settings: K8sSettings, command: Literal["train", "sweep"]) -> list[str]:
    """The arguments of the training and sweep RayJobs (paths on the shared storage)."""
    out = settings.path("runs" if command == "train" else "sweeps", f"{settings.name}-{command}")
    return [
        "--data", settings.path("datasets", settings.dataset),
        "--out", out,
        "--workers", str(settings.workers),
    ]  # fmt: skip


def ray_job(settings: K8sSettings, command: Literal["train", "sweep"]) -> dict[str, Any]:
    """A RayJob that runs ``jobs/<command>.py`` on a cluster of its own, deleted when done.

    It is created suspended, so applying the layout does not train before a dataset exists;
    ``kubectl patch rayjob NAME --type merge -p '{"spec":{"suspend":false}}'`` starts it.
    """
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _metadata(f"{settings.name}-{command}"),
        "spec": {
            "suspend": True,
            "entrypoint": job_entrypoint(command, training_args(settings, command)),
            # The image holds the project at PROJECT_DIR; the submitter ships it as the job's
            # working directory so `python jobs/...` resolves as it does from a checkout.
            "runtimeEnvYAML": yaml.safe_dump({"working_dir": PROJECT_DIR}),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 600,
            "backoffLimit": 0,
            "rayClusterSpec": cluster_spec(settings),
        },
    }


def ray_cluster(settings: K8sSettings) -> dict[str, Any]:
    """A long-lived RayCluster for ``pomona submit`` and interactive work."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": _metadata(settings.name),
        "spec": cluster_spec(settings),
    }


def ray_service(settings: K8sSettings, serve_config: str) -> dict[str, Any]:
    """A RayService running ``serve_config`` (the YAML ``pomona serve build`` writes).

    Each application reads the registry on the cluster's shared storage, and Serve's proxy
    listens on the pod's interfaces: inside a pod, loopback would hide it from the Service
    KubeRay puts in front of it (who reaches that Service is the cluster's network policy).
    Its pods run Ray as ``pomona serve``'s local Ray does
    (:func:`~pomona.serving.config.serving_env`: replicas at niceness 0, the application on
    the replica's event loop, OpenMP threads that sleep between forward passes, workers that
    start with the application imported).

    Each pomona ``api`` replica that reserves no CPU (``num_cpus`` 0 or missing, as
    ``pomona serve build`` writes by default for one small machine) reserves
    :data:`REPLICA_CPUS` here: the head runs no tasks (``num-cpus: 0``), but Ray may place an
    actor that reserves nothing on any node, the head included, where a replica's forward
    passes would take the CPU of Ray's control plane and Serve's proxy; and the autoscaler adds
    worker pods only for resources that are asked for. A reservation the config gives is kept.
    """
    config = reserving(yaml.safe_load(serve_config), "num_cpus", REPLICA_CPUS)
    config["http_options"] = {**config.get("http_options", {}), "host": "0.0.0.0"}
    for application in config["applications"]:
        if "registry" in application.get("args", {}):
            application["args"]["registry"] = settings.path("registry")
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": _metadata(f"{settings.name}-serve"),
        "spec": {
            "serveConfigV2": yaml.safe_dump(config, sort_keys=False),
            "rayClusterConfig": cluster_spec(settings, serving_env()),
        },
    }


def pod_monitor(settings: K8sSettings) -> dict[str, Any]:
    """A Prometheus Operator PodMonitor scraping every pomona Ray pod's metrics ports.

    Serve's metrics are exported on Ray's metrics port, so one endpoint covers Ray and Serve;
    the autoscaler's and the dashboard's ports exist on the head only.
    """
    endpoints = [
        {
            "port": port_name,
            "path": "/metrics",
            "interval": "15s",
            # Ray's Grafana dashboards select series by this label.
            "relabelings": [
                {
                    "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
                    "targetLabel": "ray_io_cluster",
                }
            ],
        }
        for port_name in METRICS_PORTS
    ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _metadata(f"{settings.name}-ray"),
        "spec": {
            "selector": {"matchLabels": dict(APP_LABEL)},
            "podMetricsEndpoints": endpoints,
        },
    }


def storage_claim(settings: K8sSettings) -> dict[str, Any]:
    """The ReadWriteMany claim every Ray pod mounts at :attr:`K8sSettings.storage`."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(claim_name(settings)),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": settings.storage_size}},
        },
    }


def read_serve_config(path: Path) -> str:
    """The Serve config file's text, checked to be a YAML mapping with ``applications``.

    Raises:
        ConfigError: the file is missing or is not a Serve config.
    """
    if not path.is_file():
        where = "" if path.is_absolute() else f" in {Path.cwd()}"
        raise ConfigError(
            f"Serve config {path} does not exist{where}; write it with `pomona serve build` "
            "or pass --serve-config (the project's checkout has one)"
        )
    text = path.read_text()
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict) or not loaded.get("applications"):
        raise ConfigError(f"{path} is not a Serve config: it needs an 'applications' list")
    return text
