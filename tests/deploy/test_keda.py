"""deploy/keda: the Kubernetes sketch of the standalone handler and the KEDA objects that scale it.

No cluster runs here, so nothing is applied. The checks hold the manifests to the fields KEDA
documents as required for the `azure-queue` scaler, a ScaledObject and a TriggerAuthentication:
  https://keda.sh/docs/2.21/scalers/azure-storage-queue/ (queueName required; accountName
    required with pod identity; queueLength and activationQueueLength targets; connection or
    connectionFromEnv only for connection strings),
  https://keda.sh/docs/2.21/reference/scaledobject-spec/ (scaleTargetRef.name mandatory and in
    the ScaledObject's namespace; min/max replicas, cooldownPeriod, pollingInterval),
  https://keda.sh/docs/2.21/authentication-providers/azure-ad-workload-identity/
    (podIdentity.provider: azure-workload),
(content/docs/2.21/ in the kedacore/keda-docs repository); and to the handler itself: its
default queue names, the settings it reads (from src/), the values it accepts (by starting it
with the Deployment's settings), and grace periods that agree.
"""
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from template_support import ROOT

KEDA = ROOT / "deploy" / "keda"
KEDA_API = "keda.sh/v1alpha1"
SRC = ROOT / "src"


def documents() -> list[dict]:
    docs = []
    for path in sorted(KEDA.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def of_kind(kind: str) -> list[dict]:
    return [d for d in documents() if d.get("kind") == kind]


def one(kind: str) -> dict:
    found = of_kind(kind)
    assert len(found) == 1, f"expected one {kind} under deploy/keda, found {len(found)}"
    return found[0]


def container() -> dict:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the sketch runs the handler alone in its pod"
    return containers[0]


def env() -> dict[str, str]:
    pairs = container()["env"]
    for pair in pairs:
        assert set(pair) == {"name", "value"}, f"{pair}: plain values only (no secrets to reference)"
        assert isinstance(pair["value"], str), f"{pair['name']}: Kubernetes wants env values as strings"
    names = [p["name"] for p in pairs]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {p["name"]: p["value"] for p in pairs}


def triggers() -> list[dict]:
    return one("ScaledObject")["spec"]["triggers"]


# ------------------------------------------------------------------------- what the handler reads

def source_text() -> str:
    """The handler's non-test sources (tests.rs files aside)."""
    return "\n".join(p.read_text() for p in sorted(SRC.rglob("*.rs")) if p.name != "tests.rs")


def config_rs() -> str:
    return (SRC / "config.rs").read_text()


def default_of(setting: str) -> str:
    """A setting's default as `src/config.rs` spells it: `v.name("X", "d", ..)` or
    `v.number("X", d, min, max)`."""
    text = config_rs()
    name = re.search(rf'v\.name\(\s*"{setting}",\s*"([^"]+)"', text)
    if name:
        return name.group(1)
    number = re.search(rf'v\.number\(\s*"{setting}",\s*([\d_]+),', text)
    assert number, f"no default for {setting} in src/config.rs"
    return number.group(1).replace("_", "")


def number_range(setting: str) -> tuple[int, int] | None:
    match = re.search(
        rf'v\.number\(\s*"{setting}",\s*[^,]+,\s*([^,]+),\s*([^)]+?)\s*,?\s*\)', config_rs())
    if not match:
        return None
    return product(match.group(1)), product(match.group(2))


def product(expression: str) -> int:
    """A bound as config.rs writes one: a number or a product (`7 * 24 * 3600`)."""
    text = expression.strip().replace("_", "").replace("u16::MAX as u64", "65535")
    assert re.fullmatch(r"\d+(\s*\*\s*\d+)*", text), f"cannot read the bound `{expression}`"
    result = 1
    for factor in text.split("*"):
        result *= int(factor)
    return result


def identity_suffixes() -> set[str]:
    """The `AzureWebJobsStorage__*` suffixes the handler reads (`KNOWN` in src/config/storage.rs)."""
    text = (SRC / "config" / "storage.rs").read_text()
    block = re.search(r"const KNOWN: &\[&str\] = &\[(.*?)\];", text, re.S)
    assert block, "src/config/storage.rs no longer lists KNOWN identity settings"
    return set(re.findall(r'"([^"]+)"', block.group(1)))


def function_queue(function: str) -> str:
    binding = json.loads((ROOT / function / "function.json").read_text())["bindings"][0]
    assert binding["type"] == "queueTrigger"
    return binding["queueName"]


# ------------------------------------------------------------------------------------ the files

def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KEDA / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    manifests = {p.name for p in KEDA.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    # A ScaledObject must be in its target's namespace: one namespace for all, set in one place.
    assert kustomization.get("namespace")
    assert all("namespace" not in d["metadata"] for d in documents())


def test_the_files_say_no_cluster_runs_here():
    for path in KEDA.glob("*.yaml"):
        assert "no cluster runs" in path.read_text(), f"{path.name} should say it is never applied here"


# ------------------------------------------------------------------- ScaledObject (KEDA's spec)

def test_scaled_object_targets_the_deployment():
    scaled = one("ScaledObject")
    assert scaled["apiVersion"] == KEDA_API
    target = scaled["spec"]["scaleTargetRef"]
    assert target["name"] == one("Deployment")["metadata"]["name"]  # the one mandatory field
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"


def test_replica_bounds_keep_the_http_api_up():
    spec = one("ScaledObject")["spec"]
    lowest, highest = spec["minReplicaCount"], spec["maxReplicaCount"]
    assert isinstance(lowest, int) and isinstance(highest, int)
    # Every replica serves the HTTP API too: scaling to zero would take it away.
    assert 1 <= lowest <= highest
    assert "idleReplicaCount" not in spec
    assert isinstance(spec["cooldownPeriod"], int) and spec["cooldownPeriod"] > 0
    assert isinstance(spec["pollingInterval"], int) and spec["pollingInterval"] > 0


def test_every_trigger_is_an_identity_based_azure_queue():
    auth = one("TriggerAuthentication")
    assert triggers(), "the ScaledObject has no trigger"
    for trigger in triggers():
        assert trigger["type"] == "azure-queue"
        metadata = trigger["metadata"]
        assert metadata["queueName"], "queueName is required"
        # Pod identity needs the account by name, and nothing that carries a key.
        assert metadata["accountName"], "accountName is required with pod identity"
        for keyed in ("connection", "connectionFromEnv"):
            assert keyed not in metadata, f"{keyed}: the scaler must read the queue by identity"
        assert not any("AccountKey" in str(v) or "SharedAccessSignature" in str(v)
                       for v in metadata.values())
        # KEDA takes metadata as strings; a target must be a positive integer.
        for field in ("queueLength", "activationQueueLength"):
            value = metadata[field]
            assert isinstance(value, str) and value.isdigit(), f"{field}: {value!r}"
        assert int(metadata["queueLength"]) > 0
        assert metadata.get("queueLengthStrategy", "all") in ("all", "visibleonly")
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_trigger_authentication_uses_azure_workload_identity():
    auth = one("TriggerAuthentication")
    assert auth["apiVersion"] == KEDA_API
    spec = auth["spec"]
    assert spec["podIdentity"]["provider"] == "azure-workload"
    # Nothing secret: no secret or environment references beside the pod identity.
    assert set(spec) == {"podIdentity"}


# --------------------------------------------------------------- agreement with the handler

def test_the_work_trigger_watches_the_handlers_default_work_queue():
    queue = default_of("WORK_QUEUE_NAME")
    assert queue == function_queue("AsyncProcessingBackgroundWorker")
    names = [t["metadata"]["queueName"] for t in triggers()]
    assert names[0] == queue
    assert env().get("WORK_QUEUE_NAME", queue) == queue
    # Any other trigger watches a queue this handler works on: the callbacks' queue.
    assert set(names[1:]) <= {f"{queue}-callbacks"}
    assert f"{queue}-callbacks" == function_queue("AsyncProcessingCallbackWorker")


def test_triggers_and_the_deployment_name_one_account():
    account = env()["AzureWebJobsStorage__accountName"]
    assert {t["metadata"]["accountName"] for t in triggers()} == {account}


def test_queue_length_is_one_replicas_concurrency():
    concurrency = env().get("WORKER_CONCURRENCY", default_of("WORKER_CONCURRENCY"))
    for trigger in triggers():
        assert trigger["metadata"]["queueLength"] == concurrency


def test_deployment_settings_are_ones_the_handler_reads():
    sources = source_text()
    suffixes = {s.lower() for s in identity_suffixes()}
    for name in env():
        if name.startswith("AzureWebJobsStorage__"):
            assert name.split("__", 1)[1].lower() in suffixes, f"{name} is not read by the handler"
        else:
            assert f'"{name}"' in sources, f"{name} is not a setting the handler reads (src/)"


def test_deployment_settings_are_in_range():
    for name, value in env().items():
        bounds = number_range(name)
        if bounds:
            assert value.isdigit() and bounds[0] <= int(value) <= bounds[1], f"{name}={value}"


def test_storage_by_workload_identity_not_a_key():
    settings = env()
    assert "AzureWebJobsStorage" not in settings, "no connection string: storage by identity"
    assert settings.get("AzureWebJobsStorage__accountName")
    # Unset credential + AZURE_FEDERATED_TOKEN_FILE (injected) = workload identity in the handler.
    assert "AzureWebJobsStorage__credential" not in settings
    assert "AZURE_FEDERATED_TOKEN_FILE" in (SRC / "config" / "storage.rs").read_text()
    # Standalone: the custom handler port would put it in Functions-host mode.
    assert "FUNCTIONS_CUSTOMHANDLER_PORT" not in settings
    pod = one("Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    accounts = {a["metadata"]["name"]: a for a in of_kind("ServiceAccount")}
    account = accounts[pod["spec"]["serviceAccountName"]]
    assert account["metadata"]["annotations"]["azure.workload.identity/client-id"]


def test_grace_periods_agree():
    pod = one("Deployment")["spec"]["template"]["spec"]
    kill_after = pod["terminationGracePeriodSeconds"]
    grace = int(env().get("SHUTDOWN_GRACE_SECONDS", default_of("SHUTDOWN_GRACE_SECONDS")))
    # SIGKILL comes after terminationGracePeriodSeconds: the handler's own grace must end first,
    # with a few seconds to close connections and exit.
    assert kill_after >= grace + 5, f"terminationGracePeriodSeconds {kill_after} vs grace {grace}"
    # The HPA's scale-in waits longer than one drain, so a pod is not removed, replaced and
    # removed again while messages it let go are still hidden.
    scale_down = one("ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"][
        "behavior"]["scaleDown"]
    visibility = int(env().get("VISIBILITY_TIMEOUT_SECONDS", default_of("VISIBILITY_TIMEOUT_SECONDS")))
    assert scale_down["stabilizationWindowSeconds"] >= kill_after + visibility


def test_probes_ask_the_handlers_port_for_its_root():
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert str(ports["http"]) == env()["PORT"]
    assert env()["BIND_ADDRESS"] not in ("127.0.0.1", "::1"), "loopback is unreachable for probes"
    for probe in ("readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/" and get["port"] in ("http", ports["http"])
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


# ----------------------------------------------------- the handler with the Deployment's settings

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_handler_starts_with_the_deployment_settings_and_answers_the_probe():
    """Every value in the Deployment is one the handler accepts, and GET / (the probes) answers
    200. Storage is left out (no account here, so in memory) and it listens on loopback."""
    binary = os.environ.get("HANDLER_BIN", str(ROOT / "target" / "debug" / "handler"))
    if not Path(binary).exists():
        pytest.fail(f"no handler binary at {binary}: scripts/test.sh builds it")
    settings = {k: v for k, v in env().items() if not k.startswith("AzureWebJobsStorage")}
    port = free_port()
    settings.update(BIND_ADDRESS="127.0.0.1", PORT=str(port), RUST_LOG="warn",
                    PATH=os.environ.get("PATH", ""))
    process = subprocess.Popen([binary], env=settings, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.ConnectionError:
                if process.poll() is not None:
                    pytest.fail(f"the handler refused the settings: {process.stderr.read()}")
                assert time.monotonic() < deadline, "no answer on GET / within 30 s"
                time.sleep(0.05)
        assert answer.status_code == 200
    finally:
        process.terminate()
        grace = int(settings.get("SHUTDOWN_GRACE_SECONDS", default_of("SHUTDOWN_GRACE_SECONDS")))
        assert process.wait(timeout=grace + 5) == 0, "no clean exit on SIGTERM within the grace"
