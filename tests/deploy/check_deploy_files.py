#!/usr/bin/env python3
"""Checks the deployment files under deploy/ against the code they deploy.

- deploy/grafana/cutover-dashboard.json parses, and every cutover_* metric it names is one the
  sources under src/ expose (a histogram's _bucket/_sum/_count series count as its family);
- the cutover.yaml embedded in deploy/kubernetes/cutover.yaml's ConfigMap passes
  `$CUTOVER_BINARY serve --config FILE --check-config`, with a dummy value for every variable
  its *_env keys name, and the Secret in the same file provides each of those variables;
- deploy/systemd/cutover.service has its ExecStartPre (--check-config), ExecStart and
  ExecReload (SIGHUP) lines;
- deploy/docker/Dockerfile has its two stages, ENTRYPOINT and CMD.

Python standard library only. Usage: CUTOVER_BINARY=build/cutover python3 check_deploy_files.py
(the binary may also be given as the first argument).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message)


def failed_since(count):
    return len(failures) > count


def exposed_metric_names():
    """Every "cutover_..." string literal in the C++ sources."""
    names = set()
    for path in (ROOT / "src").rglob("*"):
        if path.suffix in (".cc", ".h"):
            names.update(re.findall(r'"(cutover_[a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    return names


def check_dashboard():
    path = DEPLOY / "grafana" / "cutover-dashboard.json"
    try:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        fail(f"{path}: not valid JSON: {error}")
        return
    exposed = exposed_metric_names()
    if not exposed:
        fail("no cutover_* metric names found under src/")
        return
    # The queries only: targets and template variables (descriptions are prose).
    queries = []

    def walk(panels):
        for panel in panels:
            queries.extend(target.get("expr", "") for target in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        queries.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    used = set()
    for query in queries:
        used.update(re.findall(r"\bcutover_[a-z0-9_]+", query))
    if not used:
        fail(f"{path}: no cutover_* metric in any query")
    for name in sorted(used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in exposed and base not in exposed:
            fail(f"{path}: metric {name} is not exposed by anything under src/")
    print(f"dashboard: {len(queries)} queries, metrics {', '.join(sorted(used))}")


def yaml_documents(text):
    return re.split(r"^---\s*$", text, flags=re.MULTILINE)


def block_scalar(document, key):
    """The content of `key: |` in a YAML document, dedented (enough YAML for this manifest)."""
    lines = document.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)" + re.escape(key) + r":\s*\|[-+]?\s*$", line)
        if not match:
            continue
        key_indent = len(match.group(1))
        body = []
        for following in lines[index + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= key_indent:
                break
            body.append(following)
        while body and not body[-1].strip():
            body.pop()
        indents = [len(l) - len(l.lstrip()) for l in body if l.strip()]
        if not indents:
            return ""
        indent = indents[0]
        return "\n".join(l[indent:] for l in body) + "\n"
    return None


def mapping_keys(document, key):
    """The keys of the block mapping under `key:` (one level)."""
    lines = document.splitlines()
    keys = []
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)" + re.escape(key) + r":\s*$", line)
        if not match:
            continue
        key_indent = len(match.group(1))
        for following in lines[index + 1:]:
            if not following.strip() or following.lstrip().startswith("#"):
                continue
            if len(following) - len(following.lstrip()) <= key_indent:
                break
            entry = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*):", following)
            if entry:
                keys.append(entry.group(1))
        break
    return keys


def check_kubernetes(binary):
    path = DEPLOY / "kubernetes" / "cutover.yaml"
    text = path.read_text(encoding="utf-8")
    documents = yaml_documents(text)
    kinds = [m.group(1) for d in documents for m in [re.search(r"^kind:\s*(\S+)", d, re.MULTILINE)] if m]
    for kind in ("ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"):
        if kind not in kinds:
            fail(f"{path}: no {kind}")
    config_map = next((d for d in documents if re.search(r"^kind:\s*ConfigMap\s*$", d, re.MULTILINE)), "")
    config = block_scalar(config_map, "cutover.yaml")
    if not config:
        fail(f"{path}: the ConfigMap has no `cutover.yaml: |` entry")
        return
    variables = sorted(set(re.findall(r"\b\w*_env:\s*([A-Za-z_][A-Za-z0-9_]*)", config)))
    secret = next((d for d in documents if re.search(r"^kind:\s*Secret\s*$", d, re.MULTILINE)), "")
    provided = set(mapping_keys(secret, "stringData")) | set(mapping_keys(secret, "data"))
    for variable in variables:
        if variable not in provided:
            fail(f"{path}: the config reads ${variable} but the Secret does not provide it")
    if not binary:
        fail("set CUTOVER_BINARY (or pass the binary) to check the ConfigMap's cutover.yaml")
        return
    with tempfile.TemporaryDirectory() as directory:
        config_path = Path(directory) / "cutover.yaml"
        # The state store lives on the pod's volume; --check-config checks that its directory is
        # writable, so it is pointed into the temporary directory here.
        config = re.sub(r"^(\s*state_store:\s*)\S+", rf"\g<1>{directory}/state.db", config,
                        flags=re.MULTILINE)
        config_path.write_text(config, encoding="utf-8")
        environment = dict(os.environ)
        # Distinct values: the admin token must differ from every client key.
        environment.update({variable: f"dummy-{variable.lower()}" for variable in variables})
        result = subprocess.run([binary, "serve", "--config", str(config_path), "--check-config"],
                                env=environment, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        fail(f"{path}: the ConfigMap's cutover.yaml fails --check-config:\n{result.stdout}{result.stderr}")
    else:
        print(f"kubernetes: ConfigMap cutover.yaml passes --check-config (variables {', '.join(variables)})")


def check_systemd():
    before = len(failures)
    path = DEPLOY / "systemd" / "cutover.service"
    lines = [l.strip() for l in path.read_text(encoding="utf-8").splitlines()]

    def values(key):
        return [l.split("=", 1)[1] for l in lines if l.startswith(key + "=")]

    starts = values("ExecStart")
    if len(starts) != 1 or not re.search(r"cutover serve --config \S+$", starts[0]):
        fail(f"{path}: needs exactly one `ExecStart=... cutover serve --config FILE`")
    if not any("--check-config" in v for v in values("ExecStartPre")):
        fail(f"{path}: needs an ExecStartPre running --check-config")
    if not any(re.search(r"kill -HUP \$MAINPID", v) for v in values("ExecReload")):
        fail(f"{path}: needs `ExecReload=/bin/kill -HUP $MAINPID`")
    for key in ("StateDirectory", "EnvironmentFile", "TimeoutStopSec", "KillSignal"):
        if not values(key):
            fail(f"{path}: no {key}=")
    stop = values("TimeoutStopSec")
    if stop and not re.fullmatch(r"\d+s?", stop[0]):
        fail(f"{path}: TimeoutStopSec should be written in seconds")
    elif stop and int(stop[0].rstrip("s")) <= 30:
        fail(f"{path}: TimeoutStopSec must exceed the default drain_timeout (30s)")
    if not failed_since(before):
        print("systemd: ExecStartPre, ExecStart and ExecReload present")


def check_dockerfile():
    before = len(failures)
    path = DEPLOY / "docker" / "Dockerfile"
    text = path.read_text(encoding="utf-8")
    for pattern in (r"^FROM debian:bookworm AS build", r"^FROM debian:bookworm-slim",
                    r'^ENTRYPOINT \["cutover"\]', r"^CMD \[", r"^EXPOSE 8080 9090",
                    r"^VOLUME /var/lib/cutover", r"^USER "):
        if not re.search(pattern, text, re.MULTILINE):
            fail(f"{path}: no line matching {pattern}")
    if not failed_since(before):
        print("docker: stages, user, ports, volume, entrypoint present")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CUTOVER_BINARY", "")
    check_dashboard()
    check_kubernetes(binary)
    check_systemd()
    check_dockerfile()
    if failures:
        print(f"{len(failures)} problem(s) in deploy/")
        return 1
    print("deploy/: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
