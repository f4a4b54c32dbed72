#!/usr/bin/env python3
"""Validates docker-compose.yml against the Compose specification's JSON Schema (the
compose_spec.json shipped in PyPI's docker-compose 1.29.2 wheel, downloaded once into the
venv's cache; no Docker engine needed) and checks that every worker kind has a service running
`worker <name>`, that serve and the scheduled jobs have theirs, that every long-running
FlashFit service has a health check, and that Prometheus scrapes every one of them.
Usage: check_compose.py <docker-compose.yml> <prometheus.yml> --workers quality,detect,...
Prints JSON; exit 1 with the problems on stderr.
"""
import argparse, glob, json, os, subprocess, sys, tempfile, zipfile

import jsonschema
import yaml

ap = argparse.ArgumentParser()
ap.add_argument("compose")
ap.add_argument("prometheus")
ap.add_argument("--workers", required=True)
args = ap.parse_args()

cache = os.path.join(os.path.dirname(os.path.dirname(sys.executable)), "compose-spec")
schema_path = os.path.join(cache, "compose_spec.json")
if not os.path.exists(schema_path):
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "-d", d, "docker-compose==1.29.2"], check=True)
        whl = glob.glob(os.path.join(d, "docker_compose-*.whl"))[0]
        with zipfile.ZipFile(whl) as z:
            data = z.read("compose/config/compose_spec.json")
    with open(schema_path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(schema_path + ".tmp", schema_path)
schema = json.load(open(schema_path))
doc = yaml.safe_load(open(args.compose))
problems = []
validator = jsonschema.Draft7Validator(schema)
for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
    problems.append(f"schema: {'/'.join(map(str, e.path))}: {e.message}")

services = doc.get("services", {})
def command(svc):
    c = svc.get("command", [])
    return c if isinstance(c, list) else c.split()
workers = [w for w in args.workers.split(",") if w]
for w in workers:
    if not any(command(s)[:2] == ["worker", w] for s in services.values()):
        problems.append(f"no service runs `flashfit worker {w}`")
flashfit = {n: s for n, s in services.items() if s.get("image", "").startswith("flashfit:")}
if not any(command(s)[:1] == ["serve"] for s in flashfit.values()):
    problems.append("no service runs `flashfit serve`")
for job in ["compact", "kpi-daily"]:
    if not any(f"flashfit {job}" in " ".join(command(s)) for s in flashfit.values()):
        problems.append(f"no scheduled service runs `flashfit {job}`")
long_running = [n for n, s in flashfit.items() if command(s)[:1] in (["worker"], ["serve"])]
for n in long_running:
    hc = flashfit[n].get("healthcheck", {}).get("test", [])
    if "/health" not in " ".join(hc):
        problems.append(f"{n}: no health check on /health")
    grace = str(flashfit[n].get("stop_grace_period", "10s"))
    if not grace.endswith("s") or int(grace[:-1]) <= 30:
        problems.append(f"{n}: stop_grace_period {grace} is not longer than the 30 s shutdown deadline")
prom = yaml.safe_load(open(args.prometheus))
scraped = {name for job in prom.get("scrape_configs", [])
           for sd in job.get("dns_sd_configs", []) for name in sd.get("names", [])}
for n in long_running:
    if n not in scraped:
        problems.append(f"Prometheus does not scrape {n}")
for p in problems:
    print(p, file=sys.stderr)
print(json.dumps({"services": sorted(services), "workers": workers,
                  "long_running": sorted(long_running), "problems": len(problems)}))
sys.exit(1 if problems else 0)
