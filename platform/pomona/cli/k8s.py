"""``pomona k8s render``: KubeRay manifests (kustomize layout) from one set of settings."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from pomona.cli.console import console
from pomona.cluster.k8s import K8sSettings
from pomona.cluster.kustomize import render_to
from pomona.config import load_config, with_default
from pomona.errors import ConfigError

_help = functools.partial(with_default, K8sSettings)

k8s_app = typer.Typer(help="Kubernetes (KubeRay) manifests.", no_args_is_help=True)


@k8s_app.command("render")
def render_command(
    out: Annotated[Path, typer.Option(help="Directory to write the kustomize layout to.")],
    image: Annotated[
        str | None, typer.Option(help=_help("image", "Image repository, no tag."))
    ] = None,
    tag: Annotated[
        str | None, typer.Option(help=_help("tag", "Image tag; variants add -cpu / -gpu."))
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help=_help("workers", "Worker pods to start with; training's --workers.")),
    ] = None,
    max_workers: Annotated[
        int | None,
        typer.Option(help=_help("max_workers", "Autoscaling ceiling; raised to --workers.")),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help=_help("storage", "Shared volume mount path for datasets, runs, registry.")
        ),
    ] = None,
    serve_config: Annotated[
        Path | None, typer.Option(help=_help("serve_config", "Serve config YAML."))
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help=_help("dataset", "Dataset the RayJobs train on: a folder under STORAGE/datasets.")
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing OUT.")
    ] = False,
) -> None:
    """Render a RayCluster, training and sweep RayJobs, a RayService and a PodMonitor.

    OUT gets base/ (CPU image) and overlays/cpu, overlays/gpu: apply one with
    `kubectl apply -k OUT/overlays/cpu`.
    """
    if max_workers is None and workers is not None:  # a larger --workers raises the default
        max_workers = max(workers, K8sSettings.model_fields["max_workers"].default)
    flags = {"image": image, "tag": tag, "workers": workers, "max_workers": max_workers,
             "storage": storage, "serve_config": serve_config, "dataset": dataset}  # fmt: skip
    settings = load_config(K8sSettings, flags=flags)
    try:
        written = render_to(settings, out, overwrite=overwrite)
    except FileExistsError:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it") from None
    console.print(f"wrote {len(written)} files to {out}:", soft_wrap=True)
    for path in written:
        console.print(f"  {path}")
    console.print(
        f"apply with: kubectl apply -k {out / 'overlays' / 'cpu'} (or overlays/gpu)", soft_wrap=True
    )


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(k8s_app, name="k8s")
