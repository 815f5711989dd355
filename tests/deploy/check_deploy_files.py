#!/usr/bin/env python3
"""Checks the deployment files under deploy/ against the code they deploy.

- deploy/grafana/cutover-dashboard.json parses, and every cutover_* metric it names is one the
  sources under src/ expose (a histogram's _bucket/_sum/_count series count as its family);
- the cutover.yaml embedded in deploy/kubernetes/cutover.yaml's ConfigMap passes
  `$CUTOVER_BINARY serve --config FILE --check-config`, with a dummy value for every variable
  its *_env keys name, and each of those variables is provided to the Deployment's container,
  by the Secret in the same file or by an `env` entry whose secretKeyRef names a Secret and key
  that deploy/kubernetes/ defines;
- deploy/kubernetes/redis.yaml has its Secret, ConfigMap (redis.conf with `appendonly yes`, no
  eviction, the password included from outside the command line), a one-replica Redis 7
  StatefulSet with a volumeClaimTemplate and the password from the Secret, the headless Service
  it names and the Service that the ConfigMap's `state_store.url` points at, on its port;
- every document of both manifests parses as YAML and has apiVersion, kind and metadata.name
  (with PyYAML, Debian's python3-yaml, when it is installed; the checks above need only the
  standard library);
- deploy/systemd/cutover.service has its ExecStartPre (--check-config), ExecStart and
  ExecReload (SIGHUP) lines;
- deploy/docker/Dockerfile has its two stages, ENTRYPOINT and CMD.

Python standard library (and PyYAML if present). Usage: CUTOVER_BINARY=build/cutover python3 check_deploy_files.py
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


def documents_of_kind(documents, kind):
    return [d for d in documents if re.search(r"^kind:\s*" + kind + r"\s*$", d, re.MULTILINE)]


def metadata_name(document):
    match = re.search(r"^metadata:\s*\n(?:[ \t]+.*\n)*?[ \t]+name:\s*(\S+)", document, re.MULTILINE)
    return match.group(1) if match else None


def secret_keys(documents):
    """{(secret name, key)} defined by the Secrets in these documents."""
    keys = set()
    for secret in documents_of_kind(documents, "Secret"):
        name = metadata_name(secret)
        for key in mapping_keys(secret, "stringData") + mapping_keys(secret, "data"):
            keys.add((name, key))
    return keys


def secret_env(document):
    """[(variable, secret name, key)] of a container's `env` entries with a secretKeyRef."""
    found = []
    pattern = (r"-\s+name:\s*(\S+)\s*\n\s+valueFrom:\s*\n\s+secretKeyRef:\s*\n"
               r"\s+(name|key):\s*(\S+)\s*\n\s+(name|key):\s*(\S+)")
    for match in re.finditer(pattern, document):
        fields = {match.group(2): match.group(3), match.group(4): match.group(5)}
        found.append((match.group(1), fields.get("name"), fields.get("key")))
    return found


def field_env(document):
    """Variables of a container's `env` entries set from the pod's own fields (downward API)."""
    pattern = r"-\s+name:\s*(\S+)\s*\n\s+valueFrom:\s*\n\s+fieldRef:\s*\n\s+fieldPath:\s*\S+"
    return [match.group(1) for match in re.finditer(pattern, document)]


def kubernetes_documents():
    """{path: [document text]} for every manifest under deploy/kubernetes/."""
    return {path: yaml_documents(path.read_text(encoding="utf-8"))
            for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))}


def check_kubernetes(binary):
    path = DEPLOY / "kubernetes" / "cutover.yaml"
    manifests = kubernetes_documents()
    documents = manifests[path]
    all_documents = [d for docs in manifests.values() for d in docs]
    kinds = [m.group(1) for d in documents for m in [re.search(r"^kind:\s*(\S+)", d, re.MULTILINE)] if m]
    for kind in ("ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"):
        if kind not in kinds:
            fail(f"{path}: no {kind}")
    config_map = next(iter(documents_of_kind(documents, "ConfigMap")), "")
    config = block_scalar(config_map, "cutover.yaml")
    if not config:
        fail(f"{path}: the ConfigMap has no `cutover.yaml: |` entry")
        return
    variables = sorted(set(re.findall(r"\b\w*_env:\s*([A-Za-z_][A-Za-z0-9_]*)", config)))
    secret = next(iter(documents_of_kind(documents, "Secret")), "")
    provided = set(mapping_keys(secret, "stringData")) | set(mapping_keys(secret, "data"))
    deployment = next(iter(documents_of_kind(documents, "Deployment")), "")
    defined = secret_keys(all_documents)
    for variable, secret_name, key in secret_env(deployment):
        if (secret_name, key) not in defined:
            fail(f"{path}: the Deployment sets ${variable} from Secret {secret_name} key {key}, "
                 "which no manifest under deploy/kubernetes/ defines")
        else:
            provided.add(variable)
    provided.update(field_env(deployment))
    for variable in variables:
        if variable not in provided:
            fail(f"{path}: the config reads ${variable} but neither the Secret nor the Deployment's "
                 "env provides it")
    check_redis_manifest(manifests, config)
    if not binary:
        fail("set CUTOVER_BINARY (or pass the binary) to check the ConfigMap's cutover.yaml")
        return
    with tempfile.TemporaryDirectory() as directory:
        config_path = Path(directory) / "cutover.yaml"
        # The SQLite files live on the pod's volume; --check-config checks that their directory is
        # writable, so they are pointed into the temporary directory here: a plain
        # `state_store: PATH`, or a Redis state store's `local_file: PATH`.
        config = re.sub(r"^([ \t]*state_store:[ \t]*)(?!redis://)([^\s{]+)[ \t]*$",
                        rf"\g<1>{directory}/state.db", config, flags=re.MULTILINE)
        config = re.sub(r"^([ \t]*local_file:[ \t]*)\S+", rf"\g<1>{directory}/local.db", config,
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


def check_redis_manifest(manifests, config):
    """deploy/kubernetes/redis.yaml against what the ConfigMap's cutover.yaml expects of it."""
    before = len(failures)
    path = DEPLOY / "kubernetes" / "redis.yaml"
    if path not in manifests:
        fail(f"{path}: missing")
        return
    documents = manifests[path]
    url = re.search(r"^\s*url:\s*(redis://\S+)", config, re.MULTILINE)
    if not url:
        fail("deploy/kubernetes/cutover.yaml: the ConfigMap's state_store has no redis:// url")
        return
    target = re.match(r"redis://(?:[^@/]*@)?([^:/]+)(?::(\d+))?", url.group(1))
    host, port = target.group(1), int(target.group(2) or 6379)
    statefulsets = documents_of_kind(documents, "StatefulSet")
    if len(statefulsets) != 1:
        fail(f"{path}: needs exactly one StatefulSet, has {len(statefulsets)}")
        return
    redis = statefulsets[0]
    if not re.search(r"^\s+replicas:\s*1\s*$", redis, re.MULTILINE):
        fail(f"{path}: the StatefulSet must run one replica (the gateways have no Sentinel/Cluster failover)")
    if not re.search(r"^\s+image:\s*\S*redis:7[.\w-]*\s*$", redis, re.MULTILINE):
        fail(f"{path}: the StatefulSet's image must be Redis 7 (redis:7...)")
    if "volumeClaimTemplates:" not in redis or not re.search(r"mountPath:\s*/data\b", redis):
        fail(f"{path}: the StatefulSet needs a volumeClaimTemplate mounted at /data")
    services = {metadata_name(d): d for d in documents_of_kind(documents, "Service")}
    governing = re.search(r"^\s+serviceName:\s*(\S+)", redis, re.MULTILINE)
    if not governing or governing.group(1) not in services:
        fail(f"{path}: the StatefulSet's serviceName names no Service in the file")
    elif not re.search(r"clusterIP:\s*None", services[governing.group(1)]):
        fail(f"{path}: the StatefulSet's Service {governing.group(1)} should be headless (clusterIP: None)")
    if host not in services:
        fail(f"{path}: no Service named {host}, which the ConfigMap's state_store.url ({url.group(1)}) points at")
    elif not re.search(r"^\s+(?:-\s+)?port:\s*" + str(port) + r"\s*$", services[host], re.MULTILINE):
        fail(f"{path}: Service {host} has no port {port}")
    conf = ""
    for config_map in documents_of_kind(documents, "ConfigMap"):
        conf = block_scalar(config_map, "redis.conf") or conf
    if not conf:
        fail(f"{path}: no ConfigMap with a `redis.conf: |` entry")
    else:
        directives = {line.split()[0]: line.split(None, 1)[1].strip() if len(line.split()) > 1 else ""
                      for line in conf.splitlines() if line.strip() and not line.lstrip().startswith("#")}
        for key, value in (("appendonly", "yes"), ("maxmemory-policy", "noeviction"), ("dir", "/data")):
            if directives.get(key) != value:
                fail(f"{path}: redis.conf must say `{key} {value}`")
        if "requirepass" in directives:
            fail(f"{path}: redis.conf must not hold the password (it comes from the Secret)")
        if "include" not in directives:
            fail(f"{path}: redis.conf must include the file with the password written at start")
    defined = secret_keys(documents)
    password_refs = secret_env(redis)
    if not password_refs:
        fail(f"{path}: the StatefulSet takes no password from a Secret")
    for variable, secret_name, key in password_refs:
        if (secret_name, key) not in defined:
            fail(f"{path}: the StatefulSet reads Secret {secret_name} key {key}, which the file does not define")
        elif "requirepass" not in redis:
            fail(f"{path}: the StatefulSet does not write requirepass from ${variable}")
    if not failed_since(before):
        print(f"kubernetes: redis.yaml has a one-replica Redis 7 StatefulSet with an append-only file on a "
              f"volume claim, its password from a Secret, and Service {host}:{port} for state_store.url")


def check_yaml_parses():
    """Every document of every manifest parses, with PyYAML (python3-yaml) where installed."""
    try:
        import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:
        print("kubernetes: PyYAML (python3-yaml) not installed; manifests checked without a YAML parser")
        return
    before = len(failures)
    counts = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except yaml.YAMLError as error:
            fail(f"{path}: not valid YAML: {error}")
            continue
        for document in documents:
            if not isinstance(document, dict) or not document.get("apiVersion") or not document.get("kind") \
                    or not (document.get("metadata") or {}).get("name"):
                fail(f"{path}: a document without apiVersion, kind and metadata.name")
                continue
            if document["kind"] == "ConfigMap":
                for key, value in (document.get("data") or {}).items():
                    if key.endswith(".yaml"):
                        try:
                            yaml.safe_load(value)
                        except yaml.YAMLError as error:
                            fail(f"{path}: ConfigMap {document['metadata']['name']} {key}: not valid YAML: {error}")
        counts.append(f"{path.name} ({', '.join(d['kind'] for d in documents if isinstance(d, dict))})")
    if not failed_since(before):
        print(f"kubernetes: every document parses with PyYAML: {'; '.join(counts)}")


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
    check_yaml_parses()
    check_systemd()
    check_dockerfile()
    if failures:
        print(f"{len(failures)} problem(s) in deploy/")
        return 1
    print("deploy/: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
