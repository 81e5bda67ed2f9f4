"""`pomona k8s render` end to end: a layout kustomize can build, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

SERVE_CONFIG = Path(__file__).resolve().parents[2] / "serve" / "pomona.yaml"


def test_render_writes_the_layout_with_the_given_settings(pomona, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = pomona("k8s", "render", "--out", out, "--serve-config", SERVE_CONFIG,
                    "--image", "registry.example/pomona", "--tag", "abc", "--workers", "3",
                    "--storage", "/shared")  # fmt: skip
    assert result.code == 0, result.err
    assert f"wrote 10 files to {out}" in result.out
    cluster = yaml.safe_load((out / "base" / "raycluster.yaml").read_text())
    worker = cluster["spec"]["workerGroupSpecs"][0]
    assert worker["replicas"] == 3
    assert worker["template"]["spec"]["containers"][0]["image"] == "registry.example/pomona:abc-cpu"
    job = yaml.safe_load((out / "base" / "rayjob-train.yaml").read_text())
    assert (
        "--data /shared/datasets/digits --out /shared/runs/pomona-train --workers 3"
        in (job["spec"]["entrypoint"])
    )
    gpu = yaml.safe_load((out / "overlays" / "gpu" / "kustomization.yaml").read_text())
    assert gpu["images"] == [{"name": "registry.example/pomona", "newTag": "abc-gpu"}]

    again = pomona("k8s", "render", "--out", out, "--serve-config", SERVE_CONFIG)
    assert again.code == 2
    assert again.err.strip() == f"error: {out} exists; pass --overwrite to replace it"
    replaced = pomona("k8s", "render", "--out", out, "--serve-config", SERVE_CONFIG, "--overwrite")
    assert replaced.code == 0, replaced.err
    # More workers than the default ceiling (4) raise it, rather than being refused.
    more = pomona("k8s", "render", "--out", out, "--serve-config", SERVE_CONFIG, "--overwrite",
                  "--workers", "6")  # fmt: skip
    assert more.code == 0, more.err
    cluster = yaml.safe_load((out / "base" / "raycluster.yaml").read_text())
    worker = cluster["spec"]["workerGroupSpecs"][0]
    assert (worker["replicas"], worker["maxReplicas"]) == (6, 6)


def test_overwrite_replaces_only_a_rendered_layout(pomona, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    result = pomona("k8s", "render", "--out", mine, "--serve-config", SERVE_CONFIG, "--overwrite")
    assert result.code == 2
    assert result.err.startswith(f"error: {mine} exists and is not a layout `pomona k8s render`")
    assert (mine / "notes.txt").read_text() == "the user's"


def test_render_without_serve_config_is_one_line_error(
    pomona, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.yaml"
    result = pomona("k8s", "render", "--out", tmp_path / "k8s", "--serve-config", missing)
    assert result.code == 2
    assert result.err.startswith(f"error: Serve config {missing} does not exist; ")
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "k8s").exists()
    monkeypatch.chdir(tmp_path)  # the default, serve/pomona.yaml, is relative: say to what
    result = pomona("k8s", "render", "--out", "k8s")
    where = f"serve/pomona.yaml does not exist in {tmp_path}; "
    assert result.err.startswith(f"error: Serve config {where}")


def test_render_rejects_object_store_storage(pomona, tmp_path: Path) -> None:
    result = pomona("k8s", "render", "--out", tmp_path / "k8s", "--serve-config", SERVE_CONFIG,
                    "--storage", "s3://bucket/pomona")  # fmt: skip
    assert result.code == 2
    assert result.err.startswith("error: invalid configuration:")
    assert "storage: storage 's3://bucket/pomona' must be an absolute path" in (result.err)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--workers", "3", "--max-workers", "1"), "--max-workers 1 is below --workers 3"),
        (("--image", "Bad Image!"), "image 'Bad Image!' is not a container repository"),
        (("--tag", "a b"), "tag 'a b' is not an image tag"),
        (("--dataset", "../x"), "--dataset: dataset '../x' is not a folder name"),
    ],
)
def test_render_refuses_settings_kubernetes_would(
    pomona, tmp_path: Path, args: tuple[str, ...], problem: str
) -> None:
    result = pomona("k8s", "render", "--out", tmp_path / "k8s", "--serve-config", SERVE_CONFIG,
                    *args)  # fmt: skip
    assert result.code == 2
    assert problem in result.err
    assert not (tmp_path / "k8s").exists()
