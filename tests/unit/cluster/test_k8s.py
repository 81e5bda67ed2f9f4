"""The KubeRay manifests: valid for KubeRay's CRDs, consistent with jobs/, Serve and k8s/."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from pomona.cluster import k8s
from pomona.cluster.k8s import K8sSettings
from pomona.cluster.kustomize import base_resources, gpu_patches, read_settings, render
from pomona.serving.config import serving_env

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "tests" / "data" / "kuberay-crds"
SERVE_CONFIG = REPO / "serve" / "pomona.yaml"


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected where Kubernetes would reject them.

    The API server prunes unknown fields of structural schemas and `kubectl apply` (strict
    field validation) refuses them; plain JSON Schema allows them, so close every object that
    lists its properties and does not preserve unknown fields.
    """
    schema = dict(schema)
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema.setdefault("additionalProperties", False)
    for key in ("properties",):
        if key in schema:
            schema[key] = {name: strict(sub) for name, sub in schema[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = strict(schema[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            schema[key] = [strict(sub) for sub in schema[key]]
    return schema


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft7Validator]:
    """Kind -> validator for the ray.io/v1 openAPIV3Schema of the vendored CRDs."""
    found = {}
    for path in CRDS.glob("ray.io_*.yaml"):
        crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        found[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(
            strict(v1["schema"]["openAPIV3Schema"])
        )
    assert set(found) == {"RayCluster", "RayJob", "RayService"}
    return found


def apply_json_patch(document: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add``/``replace`` on object members: what the GPU overlay's patches use."""
    document = copy.deepcopy(document)
    for op in ops:
        assert op["op"] in ("add", "replace"), op
        *parents, leaf = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "replace":
            assert leaf in node, op["path"]
        node[leaf] = op["value"]
    return document


@pytest.fixture(scope="module")
def settings() -> K8sSettings:
    return K8sSettings(serve_config=SERVE_CONFIG)


@pytest.fixture(scope="module")
def base(settings: K8sSettings) -> dict[str, dict[str, Any]]:
    return base_resources(settings, k8s.read_serve_config(SERVE_CONFIG))


@pytest.fixture(scope="module")
def gpu(settings: K8sSettings, base: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The GPU overlay's Ray resources: the base with its patches applied."""
    by_name = {m["metadata"]["name"]: m for m in base.values()}
    return [
        apply_json_patch(by_name[p["target"]["name"]], yaml.safe_load(p["patch"]))
        for p in gpu_patches(settings, base)
    ]


def ray_resources(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in manifests if m["apiVersion"] == "ray.io/v1"]


def pod_templates(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates of a RayCluster spec: the head's, then each worker group's."""
    return [group["template"] for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]]


def test_base_and_gpu_resources_validate_against_kuberay_crds(
    validators: dict[str, jsonschema.Draft7Validator],
    base: dict[str, dict[str, Any]],
    gpu: list[dict[str, Any]],
) -> None:
    checked = ray_resources(list(base.values())) + gpu
    assert sorted(m["kind"] for m in checked) == sorted(["RayCluster", "RayJob", "RayJob",
                                                         "RayService"] * 2)  # fmt: skip
    for manifest in checked:
        errors = [e.message for e in validators[manifest["kind"]].iter_errors(manifest)]
        assert errors == [], (manifest["metadata"]["name"], errors)


def test_schema_check_rejects_a_misspelled_field(
    validators: dict[str, jsonschema.Draft7Validator], base: dict[str, dict[str, Any]]
) -> None:
    cluster = copy.deepcopy(base["raycluster.yaml"])
    cluster["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    cluster["spec"]["authOptions"]["mode"] = "tokens"
    messages = " ".join(e.message for e in validators["RayCluster"].iter_errors(cluster))
    assert "maxReplica" in messages
    assert "'tokens' is not one of" in messages


def test_gpu_overlay_gives_workers_gpus_training_use_gpu_and_replicas_a_gpu(
    gpu: list[dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    for manifest in gpu:
        spec = manifest["spec"]
        cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec
        worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
        if manifest["kind"] == "RayJob":
            assert shlex.split(spec["entrypoint"])[-1] == "--use-gpu"
    (service,) = (m for m in gpu if m["kind"] == "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)
    (api,) = config["applications"][0]["deployments"]
    assert api["ray_actor_options"] == {"num_cpus": k8s.REPLICA_CPUS, "num_gpus": 1}
    # Only that: the rest of the Serve config is the base's.
    api["ray_actor_options"].pop("num_gpus")
    assert config == yaml.safe_load(base["rayservice.yaml"]["spec"]["serveConfigV2"])


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_rayjob_entrypoints_name_scripts_in_jobs(
    base: dict[str, dict[str, Any]], command: str
) -> None:
    entrypoint = shlex.split(base[f"rayjob-{command}.yaml"]["spec"]["entrypoint"])
    assert entrypoint[:2] == ["python", f"jobs/{command}.py"]
    assert (REPO / entrypoint[1]).is_file(), f"{entrypoint[1]} is not in the repository"


def test_rayjobs_train_on_the_chosen_dataset() -> None:
    settings = K8sSettings(serve_config=SERVE_CONFIG, storage="/data", dataset="shapes")
    for command in ("train", "sweep"):
        args = k8s.training_args(settings, command)  # type: ignore[arg-type]
        assert args[:2] == ["--data", "/data/datasets/shapes"]


def test_rayservice_serve_config_is_valid_for_ray_serve(base: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load(base["rayservice.yaml"]["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    assert [app.name for app in schema.applications] == ["pomona"]
    # The served app reads the registry on the shared volume, and the proxy is reachable from
    # the Service in front of the pod.
    assert config["applications"][0]["args"]["registry"] == "/mnt/pomona/registry"
    assert config["http_options"]["host"] == "0.0.0.0"
    built = yaml.safe_load(SERVE_CONFIG.read_text())
    (api,) = built["applications"][0]["deployments"]
    # The routing is planned when Serve deploys, from the registry on the shared volume.
    assert "user_config" not in api
    # Replicas reserve a CPU, so that none is placed on the head (which runs no tasks).
    assert api["ray_actor_options"] == {"num_cpus": 0.0}
    api["ray_actor_options"] = {"num_cpus": k8s.REPLICA_CPUS}
    assert config["applications"][0]["deployments"] == [api]


def test_rayservice_replicas_reserve_a_cpu_unless_the_config_gives_one(
    validators: dict[str, jsonschema.Draft7Validator], settings: K8sSettings
) -> None:
    built = yaml.safe_load(SERVE_CONFIG.read_text())
    (pomona_app,) = built["applications"]
    given = [{"num_cpus": 0.0}, {}, None, {"num_cpus": 0.5, "num_gpus": 1}, {"num_cpus": 2}]
    applications = []
    for index, options in enumerate(given):
        app = copy.deepcopy(pomona_app)
        app["name"], app["route_prefix"] = f"pomona-{index}", f"/{index}"
        (api,) = app["deployments"]
        api.pop("ray_actor_options")
        if options is not None:
            api["ray_actor_options"] = options
        applications.append(app)
    # Another application's deployment named api is not pomona's: left as it is.
    other = {"name": "other", "route_prefix": "/other", "import_path": "elsewhere:app",
             "deployments": [{"name": "api", "ray_actor_options": {"num_cpus": 0}}]}  # fmt: skip
    config = {**built, "applications": [*applications, other]}
    service = k8s.ray_service(settings, yaml.safe_dump(config))
    assert list(validators["RayService"].iter_errors(service)) == []
    rendered = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(rendered)
    reserved = [app["deployments"][0]["ray_actor_options"] for app in rendered["applications"]]
    assert reserved == [
        {"num_cpus": 1},
        {"num_cpus": 1},
        {"num_cpus": 1},
        {"num_cpus": 0.5, "num_gpus": 1},
        {"num_cpus": 2},
        {"num_cpus": 0},
    ]


def test_rayservice_pods_run_ray_as_pomona_serve_does(base: dict[str, dict[str, Any]]) -> None:
    def pod_env(spec: dict[str, Any]) -> list[dict[str, str]]:
        return [{e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
                for pod in pod_templates(spec)]  # fmt: skip

    serving = serving_env()
    assert "RAY_SERVE_ENABLE_DIRECT_INGRESS" not in serving  # Serve's proxy fronts the pods
    for env in pod_env(base["rayservice.yaml"]["spec"]["rayClusterConfig"]):
        assert serving.items() <= env.items()
        assert env["POMONA_REGISTRY"] == "/mnt/pomona/registry"
    # Training and sweeps keep Ray's defaults.
    for env in pod_env(base["raycluster.yaml"]["spec"]):
        assert serving.keys().isdisjoint(env)


def test_rayservice_reads_the_registry_under_the_chosen_storage() -> None:
    settings = K8sSettings(serve_config=SERVE_CONFIG, storage="/data/shared")
    service = base_resources(settings, k8s.read_serve_config(SERVE_CONFIG))["rayservice.yaml"]
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert config["applications"][0]["args"]["registry"] == "/data/shared/registry"


def test_token_auth_on_and_head_not_exposed(base: dict[str, dict[str, Any]]) -> None:
    specs = [base["raycluster.yaml"]["spec"], base["rayservice.yaml"]["spec"]["rayClusterConfig"]]
    specs += [base[f"rayjob-{c}.yaml"]["spec"]["rayClusterSpec"] for c in ("train", "sweep")]
    for spec in specs:
        assert spec["authOptions"] == {"mode": "token", "secretName": "pomona-ray-auth"}
        assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
        assert spec["headGroupSpec"]["enableIngress"] is False


def test_pod_monitor_selects_ray_pods_and_their_metrics_ports(
    base: dict[str, dict[str, Any]],
) -> None:
    monitor = base["podmonitor.yaml"]["spec"]
    cluster = base["raycluster.yaml"]["spec"]
    ports = set()
    for pod in pod_templates(cluster):
        assert monitor["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        ports |= {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    scraped = {endpoint["port"] for endpoint in monitor["podMetricsEndpoints"]}
    assert "metrics" in scraped
    assert scraped <= ports


def test_every_pod_mounts_the_storage_claim(base: dict[str, dict[str, Any]]) -> None:
    claim = base["storage.yaml"]["metadata"]["name"]
    cluster = base["raycluster.yaml"]["spec"]
    for pod in pod_templates(cluster):
        (volume,) = pod["spec"]["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] == claim
        (mount,) = pod["spec"]["containers"][0]["volumeMounts"]
        assert mount == {"name": volume["name"], "mountPath": "/mnt/pomona"}


def test_committed_k8s_layout_is_up_to_date() -> None:
    layout = REPO / "k8s"
    settings = read_settings(layout)
    expected = render(settings, k8s.read_serve_config(REPO / settings.serve_config))
    committed = {
        str(p.relative_to(layout)): p.read_text() for p in layout.rglob("*") if p.is_file()
    }
    stale = sorted(path for path in expected.keys() | committed.keys()
                   if expected.get(path) != committed.get(path))  # fmt: skip
    assert stale == [], f"k8s/ is stale ({stale}); re-render it with `pomona k8s render`"


def test_dockerfile_builds_the_ray_version_and_project_dir_the_manifests_use() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert f"ARG RAY_VERSION={k8s.RAY_VERSION}\n" in text
    assert "FROM rayproject/ray:${RAY_VERSION}-py311-${VARIANT}\n" in text
    assert f"WORKDIR {k8s.PROJECT_DIR}\n" in text
    assert "COPY --chown=ray:users jobs ./jobs\n" in text


@pytest.mark.parametrize("storage", ["s3://bucket/pomona", "relative/dir"])
def test_storage_must_be_a_mountable_absolute_path(storage: str) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        K8sSettings(storage=storage)


def test_file_uri_storage_is_mounted_as_its_path() -> None:
    assert K8sSettings(storage="file:///data/pomona/").path("runs") == "/data/pomona/runs"
