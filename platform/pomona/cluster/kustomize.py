"""The kustomize layout of pomona's KubeRay manifests: ``base/`` plus ``cpu`` and ``gpu`` overlays.

``base/`` runs the CPU image. ``overlays/gpu`` swaps the image tag (kustomize ``images``) and,
with JSON 6902 patches, gives each worker pod GPUs, passes ``--use-gpu`` to the training jobs
and gives each Serve replica a GPU. ``settings.yaml`` records the settings the layout was
rendered from, so it can be re-rendered (and checked for staleness) exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pomona.cluster import k8s
from pomona.cluster.k8s import K8sSettings
from pomona.config import load_config
from pomona.errors import ConfigError
from pomona.location import replaceable
from pomona.serving.plan import on_gpus
from pomona.storage import atomic_directory

SETTINGS_FILE = "settings.yaml"
HEADER = "# Rendered by `pomona k8s render`; change the settings and re-render, do not edit.\n"
GPU_RESOURCE = "nvidia.com/gpu"


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so the embedded Serve config stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(document: dict[str, Any] | list[Any]) -> str:
    """One manifest (or patch) as YAML, keys in the order they were built."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100)


def base_resources(settings: K8sSettings, serve_config: str) -> dict[str, dict[str, Any]]:
    """``base/`` file name -> manifest."""
    return {
        "storage.yaml": k8s.storage_claim(settings),
        "raycluster.yaml": k8s.ray_cluster(settings),
        "rayjob-train.yaml": k8s.ray_job(settings, "train"),
        "rayjob-sweep.yaml": k8s.ray_job(settings, "sweep"),
        "rayservice.yaml": k8s.ray_service(settings, serve_config),
        "podmonitor.yaml": k8s.pod_monitor(settings),
    }


#: Where each custom resource keeps its RayCluster spec.
_CLUSTER_SPEC_PATH = {"RayCluster": "/spec", "RayJob": "/spec/rayClusterSpec"}
_CLUSTER_SPEC_PATH["RayService"] = "/spec/rayClusterConfig"


def gpu_patches(settings: K8sSettings, resources: dict[str, dict[str, Any]]) -> list[dict]:
    """kustomize ``patches`` entries (JSON 6902) turning the base's Ray resources into GPU ones."""
    patches = []
    for manifest in resources.values():
        kind = manifest["kind"]
        if kind not in _CLUSTER_SPEC_PATH:
            continue
        worker = f"{_CLUSTER_SPEC_PATH[kind]}/workerGroupSpecs/0/template/spec/containers/0"
        gpu_key = GPU_RESOURCE.replace("/", "~1")
        ops: list[dict[str, Any]] = [
            {"op": "add", "path": f"{worker}/resources/{part}/{gpu_key}",
             "value": settings.gpus_per_worker}
            for part in ("requests", "limits")
        ]  # fmt: skip
        if kind == "RayJob":
            entrypoint = manifest["spec"]["entrypoint"]
            ops.append(
                {"op": "replace", "path": "/spec/entrypoint", "value": f"{entrypoint} --use-gpu"}
            )
        if kind == "RayService":
            config = on_gpus(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
            serve_config = yaml.safe_dump(config, sort_keys=False)
            ops.append({"op": "replace", "path": "/spec/serveConfigV2", "value": serve_config})
        target = {"group": "ray.io", "version": "v1", "kind": kind}
        target["name"] = manifest["metadata"]["name"]
        patches.append({"target": target, "patch": to_yaml(ops)})
    return patches


def render(settings: K8sSettings, serve_config: str) -> dict[str, str]:
    """The whole layout: relative file path -> file text.

    Args:
        settings: what to render.
        serve_config: the Serve config YAML text embedded as the RayService's ``serveConfigV2``.
    """
    resources = base_resources(settings, serve_config)
    files = {f"base/{name}": HEADER + to_yaml(doc) for name, doc in resources.items()}
    kustomizations: dict[str, dict[str, Any]] = {
        "base/kustomization.yaml": {"resources": list(resources)},
        "overlays/cpu/kustomization.yaml": {"resources": ["../../base"]},
        "overlays/gpu/kustomization.yaml": {
            "resources": ["../../base"],
            "images": [{"name": settings.image, "newTag": f"{settings.tag}-gpu"}],
            "patches": gpu_patches(settings, resources),
        },
    }
    for path, body in kustomizations.items():
        document = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
        files[path] = HEADER + to_yaml({**document, **body})
    recorded = settings.model_dump(mode="json")
    files[SETTINGS_FILE] = HEADER + yaml.safe_dump(recorded, sort_keys=False)
    return files


def render_to(settings: K8sSettings, out: Path, *, overwrite: bool = False) -> list[str]:
    """Read the Serve config, render and write the layout to ``out`` atomically.

    Returns:
        The relative paths written, sorted.

    Raises:
        ConfigError: the Serve config is missing or invalid, or ``out`` exists and is not a
            layout this function wrote (never deleted, even with ``overwrite``).
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    files = render(settings, k8s.read_serve_config(settings.serve_config))
    if overwrite and not replaceable(out, SETTINGS_FILE):
        raise ConfigError(
            f"{out} exists and is not a layout `pomona k8s render` wrote (no {SETTINGS_FILE}); "
            "--overwrite replaces only such a layout: choose another --out"
        )
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for relative, text in files.items():
            path = tmp / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return sorted(files)


def read_settings(layout: Path) -> K8sSettings:
    """The settings a rendered layout records in ``settings.yaml``.

    Raises:
        ConfigError: the file is missing or invalid.
    """
    return load_config(K8sSettings, layout / SETTINGS_FILE)
