#!/usr/bin/env python3
"""Checks the Kubernetes and Argo Rollouts manifests in ops/kubernetes/.

    python3 ops/kubernetes/check.py

What it checks:
  - every file parses as YAML (a duplicated key is an error, not a silent overwrite);
  - the Deployment, Services and Secret, and the Rollout's pod template, against the
    Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are errors);
  - the API's pod: `warden api`, listening on 0.0.0.0 at the container port 8080,
    WARDEN_DATABASE_URL from the example Secret (a PostgreSQL URL), /healthz liveness
    and /readyz readiness probes, a memory limit, the Prometheus scrape annotations,
    a `release` label equal to the image tag, no fault injection; the Rollout's pod
    template identical to the Deployment's; Services that select those pods;
  - the Rollout: canary steps, a rollback window, stable and canary Services, every
    `templateName` an AnalysisTemplate of analysis-template.yaml, the arguments the
    template needs passed, a fieldRef that resolves;
  - the AnalysisTemplate: each metric's query is its alert's expression from
    ops/prometheus/warden-rules.yml (whitespace aside) with every series selector
    scoped to `release="{{args.release}}"`, and it parses (promtool check rules);
    on made-up series through the real rules (promtool test rules), it finds the
    leaking, failing and slow release, passes the healthy one and returns nothing for
    no traffic or no history; each metric has both conditions, and evaluating them (as Argo does, with a small
    interpreter of the expression subset they use) gives Inconclusive for an empty
    result and for NaN, Successful at the alert's threshold and Failed just past it.

A problem is printed as `FILE: WHERE: what is wrong`; the exit code is 1 when there is
one, 2 when a tool is missing (PyYAML; kubernetes-validate and promtool are required
under CI=true and skipped with a warning otherwise), 0 when all is well. Without PyYAML
or kubernetes-validate on the interpreter, it re-runs itself with the venv that
scripts/test makes (target/test-venv) when there is one.
"""

import copy
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV_PYTHON = ROOT / "target" / "test-venv" / "bin" / "python"
IN_CI = os.environ.get("CI") == "true"


def _reexec_in_venv():
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])


try:
    import yaml
except ImportError:
    _reexec_in_venv()
    print(
        "check: PyYAML is missing: run scripts/test (it installs it into target/test-venv), "
        "or pip install 'pyyaml>=6,<7'",
        file=sys.stderr,
    )
    sys.exit(2)

try:
    import kubernetes_validate
except ImportError:
    _reexec_in_venv()
    kubernetes_validate = None

# The Kubernetes versions the core resources are validated against: the oldest these
# manifests support (lifecycle.preStop.sleep is on by default from 1.30) and the
# newest kubernetes-validate knows.
OLDEST_KUBERNETES = "1.30"

NAMES = {
    "deployment": "deployment.yaml",
    "rollout": "rollout.yaml",
    "analysis": "analysis-template.yaml",
    "secret": "secret.example.yaml",
}
RULES = ROOT / "ops" / "prometheus" / "warden-rules.yml"
CONTAINER_PORT = 8080
RELEASE_MATCHER = 'release="{{args.release}}"'

# Each metric of the AnalysisTemplate and the alert of warden-rules.yml it asks about.
#   threshold: the alert is `SERIES > T and <rest>`; the query is `SERIES and <rest>`
#              with release selectors, and the conditions put the line at T.
#   count:     the query contains the alert's whole expression, with release
#              selectors, and returns how many instances meet it (0 is good).
METRICS = {
    "error-ratio": {"alert": "ErrorRatioHigh", "kind": "threshold"},
    "latency-p99": {"alert": "LatencyHigh", "kind": "threshold"},
    "memory-leak-heap": {"alert": "MemoryLeak", "evidence": "heap", "kind": "count"},
    "memory-leak-rss": {"alert": "MemoryLeak", "evidence": "rss", "kind": "count"},
}

problems = []
passed = 0


def where(path):
    return str(path.relative_to(ROOT))


# How problems name the files: from the repository root.
FILES = {key: where(HERE / name) for key, name in NAMES.items()}


def problem(file, field, message):
    problems.append(f"{file}: {field}: {message}")


def expect(ok, file, field, message):
    """Records one check: `message` says what is wrong when `ok` is false."""
    global passed
    if ok:
        passed += 1
    else:
        problem(file, field, message)
    return ok


# ---------------------------------------------------------------------------- YAML


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_documents(path):
    file = where(path)
    try:
        text = path.read_text()
    except OSError as error:
        problem(file, "-", f"cannot read: {error}")
        return []
    try:
        docs = [doc for doc in yaml.load_all(text, Loader=UniqueKeyLoader) if doc is not None]
    except yaml.YAMLError as error:
        problem(file, "-", f"not valid YAML: {error}")
        return []
    out = []
    for index, doc in enumerate(docs):
        label = f"document {index + 1}"
        if not isinstance(doc, dict):
            problem(file, label, "expected a mapping (a Kubernetes object)")
            continue
        for key in ("apiVersion", "kind"):
            expect(isinstance(doc.get(key), str) and doc.get(key), file, f"{label}.{key}", "missing")
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        if expect(isinstance(name, str) and name, file, f"{label}.metadata.name", "missing"):
            expect("namespace" not in doc["metadata"], file, f"{doc.get('kind')}/{name} metadata.namespace",
                   "the manifests are namespace-agnostic (kubectl apply -n NAMESPACE): remove it")
        out.append(doc)
    return out


def get(obj, path, default=None):
    """obj at a dotted path (`a.b.0.c`), or default."""
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part, default)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return default
    return obj


def ident(doc):
    return f"{doc.get('kind')}/{get(doc, 'metadata.name')}"


def find(docs, kind, name=None):
    return [d for d in docs if d.get("kind") == kind and (name is None or get(d, "metadata.name") == name)]


def first_difference(a, b, path=""):
    """The first path at which a and b differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key}".lstrip(".")
            diff = first_difference(a[key], b[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})".lstrip(".")
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b and type(a) is type(b) else (path.lstrip(".") or "(root)")


def parse_duration(text):
    """Seconds of `30s`, `5m`, `1h`, `1h30m` (Go/humantime style), or None."""
    if not isinstance(text, str):
        return None
    parts = re.fullmatch(r"((\d+)h)?((\d+)m)?((\d+)s)?", text.strip())
    if not text.strip() or not parts:
        return None
    h, m, s = (int(parts.group(i) or 0) for i in (2, 4, 6))
    return h * 3600 + m * 60 + s


# ------------------------------------------------------------- Kubernetes schemas


def validate_schema(file, doc, label=None):
    if kubernetes_validate is None:
        return
    label = label or ident(doc)
    versions = [OLDEST_KUBERNETES, kubernetes_validate.latest_version()]
    for version in dict.fromkeys(versions):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            expect(True, file, label, "")
        except kubernetes_validate.ValidationError as error:
            field = ".".join(str(p) for p in error.path) or "(root)"
            problem(file, f"{label} {field}", f"invalid for Kubernetes {error.version}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problem(file, label, error.message)
        except kubernetes_validate.utils.VersionNotSupportedError as error:
            problem(file, label, f"{error.message}: pin kubernetes-validate to a release that has it")


# ---------------------------------------------------------------- the API's pod


def check_pod_template(file, owner, template, secret_docs):
    """The pod template of the Deployment or the Rollout."""
    at = f"{owner} spec.template"
    labels = get(template, "metadata.labels", {}) or {}
    annotations = get(template, "metadata.annotations", {}) or {}
    expect(labels.get("app") == "warden", file, f"{at}.metadata.labels.app",
           "must be `warden`: the scrape configuration in ops/README.md keeps pods by it")
    release = labels.get("release")
    expect(isinstance(release, str) and release, file, f"{at}.metadata.labels.release",
           "missing (a string): Prometheus copies it into the `release` label the alerts and the analysis key on")
    expect(annotations.get("prometheus.io/scrape") == "true", file,
           f"{at}.metadata.annotations.prometheus.io/scrape", 'must be "true"')
    expect(annotations.get("prometheus.io/port") == str(CONTAINER_PORT), file,
           f"{at}.metadata.annotations.prometheus.io/port", f'must be "{CONTAINER_PORT}"')
    expect(annotations.get("prometheus.io/path") == "/metrics", file,
           f"{at}.metadata.annotations.prometheus.io/path", "must be /metrics")

    containers = get(template, "spec.containers", []) or []
    api = [c for c in containers if isinstance(c, dict) and c.get("name") == "api"]
    if not expect(len(api) == 1, file, f"{at}.spec.containers", "needs exactly one container named `api`"):
        return
    c = api[0]
    index = containers.index(c)
    cat = f"{at}.spec.containers[{index}]"

    image = c.get("image", "")
    match = re.fullmatch(r"(?:[^/:@]+(?::\d+)?/)*warden:([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})", image or "")
    if expect(match, file, f"{cat}.image", f"{image!r}: expected REGISTRY/.../warden:TAG (a tag, not latest or a digest)"):
        tag = match.group(1)
        expect(tag != "latest", file, f"{cat}.image", "`latest` is not a release: use the release's tag")
        expect(release == tag, file, f"{at}.metadata.labels.release",
               f"{release!r} must equal the image tag {tag!r}: change them together, so that each release "
               "has its own label and the canary analysis sees only the canary")

    argv = list(c.get("command") or []) + list(c.get("args") or [])
    expect(len(argv) >= 2 and Path(str(argv[0])).name == "warden" and argv[1] == "api", file,
           f"{cat}.command", f"{argv!r}: expected to run `warden api`")

    env = {e.get("name"): e for e in c.get("env") or [] if isinstance(e, dict)}
    expect(len(env) == len(c.get("env") or []), file, f"{cat}.env", "a variable is set twice")
    ports = c.get("ports") or []
    named = {p.get("name"): p.get("containerPort") for p in ports if isinstance(p, dict)}
    expect(named.get("http") == CONTAINER_PORT, file, f"{cat}.ports",
           f"needs a port named http with containerPort {CONTAINER_PORT}")

    listen = get(env, "WARDEN_LISTEN.value")
    m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[0-9.]+):(\d+)", listen or "")
    if expect(m, file, f"{cat}.env.WARDEN_LISTEN", f"{listen!r}: expected HOST:PORT (the default 127.0.0.1:8080 "
              "is unreachable from probes and Services)"):
        expect(m.group(1) in ("0.0.0.0", "[::]"), file, f"{cat}.env.WARDEN_LISTEN",
               f"{listen!r}: listen on 0.0.0.0 (or [::]) so that probes and Services reach the API")
        expect(int(m.group(2)) == CONTAINER_PORT, file, f"{cat}.env.WARDEN_LISTEN",
               f"{listen!r}: the port must be the container port {CONTAINER_PORT}")

    ref = get(env, "WARDEN_DATABASE_URL.valueFrom.secretKeyRef")
    if expect(isinstance(ref, dict), file, f"{cat}.env.WARDEN_DATABASE_URL",
              "must come from a Secret (valueFrom.secretKeyRef), never a literal value"):
        secrets = [s for s in secret_docs if get(s, "metadata.name") == ref.get("name")]
        sfile = FILES["secret"]
        if expect(secrets, file, f"{cat}.env.WARDEN_DATABASE_URL.valueFrom.secretKeyRef.name",
                  f"{ref.get('name')!r}: no such Secret in {sfile}"):
            s = secrets[0]
            data = {**(s.get("data") or {}), **(s.get("stringData") or {})}
            if expect(ref.get("key") in data, file, f"{cat}.env.WARDEN_DATABASE_URL.valueFrom.secretKeyRef.key",
                      f"{ref.get('key')!r}: no such key in Secret {ref.get('name')} ({sfile})"):
                url = (s.get("stringData") or {}).get(ref.get("key"))
                if url is not None:
                    expect(re.match(r"postgres(ql)?://", str(url)), sfile,
                           f"{ident(s)} stringData.{ref.get('key')}", "expected a postgres:// URL")
    expect("WARDEN_CHAOS_LEAK_BYTES_PER_REQUEST" not in env, file, f"{cat}.env",
           "WARDEN_CHAOS_LEAK_BYTES_PER_REQUEST is fault injection: never in a deployment")

    def probe_ok(kind, path):
        probe = c.get(kind) or {}
        http = probe.get("httpGet") or {}
        port = http.get("port")
        expect(http.get("path") == path, file, f"{cat}.{kind}.httpGet.path", f"must be {path}")
        expect(port in ("http", CONTAINER_PORT), file, f"{cat}.{kind}.httpGet.port",
               f"{port!r}: must be the port `http` ({CONTAINER_PORT})")

    probe_ok("livenessProbe", "/healthz")
    probe_ok("readinessProbe", "/readyz")
    if "startupProbe" in c:
        probe_ok("startupProbe", "/healthz")

    memory = get(c, "resources.limits.memory")
    expect(isinstance(memory, str) and memory, file, f"{cat}.resources.limits.memory",
           "missing: the memory alerts and the leak forecast measure against the limit")
    expect(get(c, "resources.requests.memory"), file, f"{cat}.resources.requests.memory", "missing")

    grace = get(template, "spec.terminationGracePeriodSeconds", 30)
    shutdown = parse_duration(get(env, "WARDEN_SHUTDOWN_TIMEOUT.value", "30s"))
    pre_stop = get(c, "lifecycle.preStop.sleep.seconds", 0)
    if expect(shutdown is not None, file, f"{cat}.env.WARDEN_SHUTDOWN_TIMEOUT", "expected a duration like 20s"):
        expect(isinstance(grace, int) and grace > shutdown + pre_stop, file,
               f"{at}.spec.terminationGracePeriodSeconds",
               f"{grace!r} must exceed the preStop sleep ({pre_stop}s) plus WARDEN_SHUTDOWN_TIMEOUT "
               f"({shutdown}s), or Kubernetes kills in-flight requests")


def check_workload(file, doc, secret_docs):
    at = ident(doc)
    selector = get(doc, "spec.selector.matchLabels")
    labels = get(doc, "spec.template.metadata.labels", {}) or {}
    if expect(isinstance(selector, dict) and selector, file, f"{at} spec.selector.matchLabels", "missing"):
        expect(all(labels.get(k) == v for k, v in selector.items()), file, f"{at} spec.selector.matchLabels",
               "does not select the pod template's labels")
        expect("release" not in selector, file, f"{at} spec.selector.matchLabels.release",
               "the selector is immutable: it must not name the release, which changes every deploy")
    expect(isinstance(get(doc, "spec.replicas"), int) and get(doc, "spec.replicas") >= 2, file,
           f"{at} spec.replicas", "run at least 2 instances")
    check_pod_template(file, at, get(doc, "spec.template", {}) or {}, secret_docs)


def check_service(file, svc, template):
    at = ident(svc)
    labels = get(template, "metadata.labels", {}) or {}
    selector = get(svc, "spec.selector")
    if expect(isinstance(selector, dict) and selector, file, f"{at} spec.selector", "missing"):
        expect(all(labels.get(k) == v for k, v in selector.items()), file, f"{at} spec.selector",
               "does not select the API's pods")
        expect("release" not in selector, file, f"{at} spec.selector.release",
               "a Service must not pin a release (Argo Rollouts splits stable and canary itself)")
    ports = get(svc, "spec.ports", []) or []
    expect(any(p.get("targetPort") in ("http", CONTAINER_PORT) for p in ports if isinstance(p, dict)),
           file, f"{at} spec.ports", f"needs a port whose targetPort is `http` ({CONTAINER_PORT})")


# ---------------------------------------------------------------- Argo Rollouts

ARGO_API = "argoproj.io/v1alpha1"
STEP_KINDS = {"setWeight", "pause", "analysis", "setCanaryScale", "experiment", "plugin",
              "setHeaderRoute", "setMirrorRoute"}


def check_analysis_refs(file, at, analysis, templates, rollout):
    """An `analysis` block of the Rollout (a step's or the background one)."""
    refs = analysis.get("templates") if isinstance(analysis, dict) else None
    if not expect(isinstance(refs, list) and refs, file, f"{at}.templates", "needs at least one template"):
        return
    passed_args = {a.get("name"): a for a in analysis.get("args") or [] if isinstance(a, dict)}
    for i, ref in enumerate(refs):
        name = ref.get("templateName") if isinstance(ref, dict) else None
        field = f"{at}.templates[{i}].templateName"
        kind = "ClusterAnalysisTemplate" if isinstance(ref, dict) and ref.get("clusterScope") else "AnalysisTemplate"
        found = [t for t in templates if t.get("kind") == kind and get(t, "metadata.name") == name]
        if not expect(found, file, field, f"{name!r}: no {kind} of that name in {FILES['analysis']}"):
            continue
        wanted = {a.get("name"): a for a in get(found[0], "spec.args", []) or [] if isinstance(a, dict)}
        for arg, spec in wanted.items():
            if "value" not in spec and "valueFrom" not in spec:
                expect(arg in passed_args, file, f"{at}.args",
                       f"{name} needs the argument {arg!r}, which is not passed")
        for arg in passed_args:
            expect(arg in wanted, file, f"{at}.args.{arg}", f"{name} has no argument {arg!r}")
    for arg, spec in passed_args.items():
        path = get(spec, "valueFrom.fieldRef.fieldPath")
        if path is None:
            expect("value" in spec or "valueFrom" in spec, file, f"{at}.args.{arg}", "needs value or valueFrom")
            continue
        m = re.fullmatch(r"spec\.template\.metadata\.labels(?:\.([\w.-]+)|\['([^']+)'\])", path)
        if m:
            label = m.group(1) or m.group(2)
            expect(label in (get(rollout, "spec.template.metadata.labels", {}) or {}), file,
                   f"{at}.args.{arg}.valueFrom.fieldRef.fieldPath", f"{path}: the pod template has no label {label!r}")


def check_rollout(file, rollout, services, templates, secret_docs):
    at = ident(rollout)
    expect(rollout.get("apiVersion") == ARGO_API, file, f"{at} apiVersion", f"must be {ARGO_API}")
    check_workload(file, rollout, secret_docs)
    # The Rollout's pod template against the Kubernetes schema, as a Deployment's.
    validate_schema(file, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": get(rollout, "metadata.name")},
        "spec": {"replicas": get(rollout, "spec.replicas"), "selector": get(rollout, "spec.selector"),
                 "template": copy.deepcopy(get(rollout, "spec.template"))},
    }, label=f"{at} (its pod template, validated as a Deployment's)")

    window = get(rollout, "spec.rollbackWindow.revisions")
    expect(isinstance(window, int) and window >= 1, file, f"{at} spec.rollbackWindow.revisions",
           "set it (>= 1): a rollback to a recent revision must not wait for the canary steps and analysis")
    canary = get(rollout, "spec.strategy.canary")
    if not expect(isinstance(canary, dict), file, f"{at} spec.strategy.canary", "missing: the canary strategy"):
        return
    names = {get(s, "metadata.name") for s in services}
    for key in ("stableService", "canaryService"):
        expect(canary.get(key) in names, file, f"{at} spec.strategy.canary.{key}",
               f"{canary.get(key)!r}: no such Service in {file}")
    expect(canary.get("stableService") != canary.get("canaryService"), file,
           f"{at} spec.strategy.canary.canaryService", "must differ from stableService")

    steps = canary.get("steps")
    if not expect(isinstance(steps, list) and steps, file, f"{at} spec.strategy.canary.steps", "missing"):
        return
    weights = []
    analyses = 0
    for i, step in enumerate(steps):
        field = f"{at} spec.strategy.canary.steps[{i}]"
        if not expect(isinstance(step, dict) and len(step) == 1 and next(iter(step)) in STEP_KINDS, file, field,
                      f"a step has exactly one of {sorted(STEP_KINDS)}"):
            continue
        kind, body = next(iter(step.items()))
        if kind == "setWeight":
            if expect(isinstance(body, int) and 0 <= body <= 100, file, f"{field}.setWeight", "must be 0..100"):
                expect(not weights or body >= weights[-1], file, f"{field}.setWeight", "weights must not decrease")
                weights.append(body)
        elif kind == "pause":
            duration = (body or {}).get("duration") if isinstance(body, dict) else None
            expect(body == {} or duration is None or isinstance(duration, int)
                   or parse_duration(duration) is not None, file, f"{field}.pause.duration",
                   f"{duration!r}: expected seconds or a duration like 5m")
        elif kind == "analysis":
            analyses += 1
            check_analysis_refs(file, f"{field}.analysis", body, templates, rollout)
    if isinstance(canary.get("analysis"), dict):
        analyses += 1
        check_analysis_refs(file, f"{at} spec.strategy.canary.analysis", canary["analysis"], templates, rollout)
    expect(analyses, file, f"{at} spec.strategy.canary", "runs no analysis: add an analysis step")
    expect(weights and weights[0] < 50, file, f"{at} spec.strategy.canary.steps",
           "the first setWeight should send a small share (< 50%) to the canary")


# ------------------------------------------------ Argo's conditions, interpreted
#
# A small interpreter of the expr-lang subset the conditions use, so that the check
# runs them the way the Argo Rollouts controller does (utils/evaluate): `result` is
# the list of the vector's sample values; len, all/any/none/count with a predicate on
# `#`, isNaN, isInf, !/not, &&/and, ||/or, comparisons, arithmetic, indexing.
# Comparisons with NaN are false, as in Go. Anything else is an error, reported.


class EvalError(Exception):
    pass


TOKEN = re.compile(r"\s*(?:(?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?|\.\d+)"
                   r"|(?P<name>[A-Za-z_]\w*)|(?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/%()\[\]{},#]))")


def tokenize(text):
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        if not m:
            raise EvalError(f"unexpected {text[pos:].strip()[:10]!r}")
        pos = m.end()
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
    out.append(("end", ""))
    return out


class Parser:
    def __init__(self, text):
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, *values):
        kind, value = self.tokens[self.i]
        return value if (value in values and kind != "num") else None

    def take(self, value=None):
        kind, val = self.tokens[self.i]
        if value is not None and val != value:
            raise EvalError(f"expected {value!r}, found {val or 'the end'!r}")
        self.i += 1
        return kind, val

    def parse(self):
        node = self.orexpr()
        if self.tokens[self.i][0] != "end":
            raise EvalError(f"unexpected {self.tokens[self.i][1]!r}")
        return node

    def orexpr(self):
        node = self.andexpr()
        while self.peek("||", "or"):
            self.take()
            node = ("or", node, self.andexpr())
        return node

    def andexpr(self):
        node = self.compare()
        while self.peek("&&", "and"):
            self.take()
            node = ("and", node, self.compare())
        return node

    def compare(self):
        node = self.additive()
        while self.peek("==", "!=", "<", ">", "<=", ">="):
            op = self.take()[1]
            node = ("cmp", op, node, self.additive())
        return node

    def additive(self):
        node = self.term()
        while self.peek("+", "-"):
            op = self.take()[1]
            node = ("arith", op, node, self.term())
        return node

    def term(self):
        node = self.unary()
        while self.peek("*", "/", "%"):
            op = self.take()[1]
            node = ("arith", op, node, self.unary())
        return node

    def unary(self):
        if self.peek("!", "not"):
            self.take()
            return ("not", self.unary())
        if self.peek("-"):
            self.take()
            return ("neg", self.unary())
        return self.postfix()

    def postfix(self):
        node = self.primary()
        while self.peek("["):
            self.take()
            index = self.orexpr()
            self.take("]")
            node = ("index", node, index)
        return node

    def primary(self):
        kind, value = self.take()
        if kind == "num":
            return ("lit", float(value))
        if value == "(":
            node = self.orexpr()
            self.take(")")
            return node
        if value == "#":
            return ("elem",)
        if kind == "name":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if self.peek("("):
                self.take()
                args = []
                while not self.peek(")"):
                    if self.peek("{"):
                        self.take()
                        args.append(("closure", self.orexpr()))
                        self.take("}")
                    else:
                        args.append(self.orexpr())
                    if not self.peek(")"):
                        self.take(",")
                self.take(")")
                return ("call", value, args)
            return ("var", value)
        raise EvalError(f"unexpected {value or 'end of condition'!r}")


def is_number(v):
    return isinstance(v, float) and not isinstance(v, bool)


def evaluate(node, env, elem=None):
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "elem":
        if elem is None:
            raise EvalError("`#` outside a predicate")
        return elem
    if op == "var":
        if node[1] not in env:
            raise EvalError(f"unknown name {node[1]!r}")
        return env[node[1]]
    if op in ("and", "or"):
        left = evaluate(node[1], env, elem)
        if not isinstance(left, bool):
            raise EvalError(f"{op} needs booleans")
        if (op == "and" and not left) or (op == "or" and left):
            return left
        right = evaluate(node[2], env, elem)
        if not isinstance(right, bool):
            raise EvalError(f"{op} needs booleans")
        return right
    if op == "not":
        value = evaluate(node[1], env, elem)
        if not isinstance(value, bool):
            raise EvalError("! needs a boolean")
        return not value
    if op == "neg":
        value = evaluate(node[1], env, elem)
        if not is_number(value):
            raise EvalError("- needs a number")
        return -value
    if op == "cmp":
        a, b = evaluate(node[2], env, elem), evaluate(node[3], env, elem)
        if node[1] in ("==", "!=") and type(a) is type(b):
            return (a == b) if node[1] == "==" else (a != b)
        if not (is_number(a) and is_number(b)):
            raise EvalError(f"cannot compare {type(a).__name__} and {type(b).__name__}")
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b, "==": a == b, "!=": a != b}[node[1]]
    if op == "arith":
        a, b = evaluate(node[2], env, elem), evaluate(node[3], env, elem)
        if not (is_number(a) and is_number(b)):
            raise EvalError(f"{node[1]} needs numbers")
        if node[1] in "/%" and b == 0:
            return math.nan if a == 0 or math.isnan(a) or node[1] == "%" else math.copysign(math.inf, a)
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0, "%": math.fmod(a, b) if b else 0}[node[1]]
    if op == "index":
        seq, index = evaluate(node[1], env, elem), evaluate(node[2], env, elem)
        if not isinstance(seq, list) or not is_number(index):
            raise EvalError("indexing needs a list and a number")
        i = int(index)
        if not -len(seq) <= i < len(seq):
            raise EvalError(f"index out of range: {i} with length {len(seq)}")
        return seq[i]
    if op == "call":
        name, args = node[1], node[2]
        if name in ("all", "any", "none", "count", "filter"):
            if len(args) != 2:
                raise EvalError(f"{name} takes a list and a predicate")
            seq = evaluate(args[0], env, elem)
            if not isinstance(seq, list):
                raise EvalError(f"{name} needs a list")
            pred = args[1][1] if args[1][0] == "closure" else args[1]
            results = []
            for item in seq:
                r = evaluate(pred, env, item)
                if not isinstance(r, bool):
                    raise EvalError(f"{name}'s predicate must be boolean")
                results.append(r)
            return {"all": all(results), "any": any(results), "none": not any(results),
                    "count": float(sum(results)), "filter": [x for x, r in zip(seq, results) if r]}[name]
        values = [evaluate(a, env, elem) for a in args]
        if name == "len" and len(values) == 1 and isinstance(values[0], list):
            return float(len(values[0]))
        if name in ("isNaN", "isInf") and len(values) == 1:
            if not is_number(values[0]):
                raise EvalError(f"{name} needs a number, got {type(values[0]).__name__}")
            return math.isnan(values[0]) if name == "isNaN" else math.isinf(values[0])
        raise EvalError(f"unsupported call {name}({len(values)} arguments)")
    raise EvalError(f"unsupported {op}")


def measurement_phase(success, failure, result):
    """Argo's verdict on one measurement (utils/evaluate.EvaluateResult)."""
    env = {"result": result}
    try:
        ok = evaluate(Parser(success).parse(), env) if success else False
        bad = evaluate(Parser(failure).parse(), env) if failure else False
    except EvalError as error:
        return f"Error ({error})"
    if not isinstance(ok, bool) or not isinstance(bad, bool):
        return "Error (a condition is not boolean)"
    if success and not failure:
        bad = not ok
    if failure and not success:
        ok = not bad
    if bad:
        return "Failed"
    return "Successful" if ok else "Inconclusive"


# ------------------------------------------------------------- PromQL, roughly

PROMQL_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`)'
    r'|(?P<dur>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)'
    r'|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0x[0-9a-fA-F]+|[Ii]nf|NaN)'
    r'|(?P<name>[A-Za-z_:][\w:]*)'
    r'|(?P<op>\{\{[^}]*\}\}|[{}()\[\],]|[-+*/%^<>=!~]+))')
PROMQL_KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring",
                   "group_left", "group_right", "atan2", "start", "end"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def selectors(query):
    """(metric name, matcher text or None) of every series selector in a PromQL query."""
    tokens = []
    pos = 0
    while pos < len(query):
        m = PROMQL_TOKEN.match(query, pos)
        if not m or m.end() == pos:
            if query[pos:].strip() == "":
                break
            raise ValueError(f"cannot read the query at {query[pos:pos + 20]!r}")
        pos = m.end()
        tokens.append((m.lastgroup, m.group(m.lastgroup)))
    out = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "op" and value == "{":  # a selector without a name: {__name__=...}
            depth, j = 1, i + 1
            while j < len(tokens) and depth:
                depth += {"{": 1, "}": -1}.get(tokens[j][1], 0)
                j += 1
            out.append((None, query_text(tokens[i + 1:j - 1])))
            i = j
            continue
        if kind == "op" and value == "[":  # a range or subquery: skip to ]
            while i < len(tokens) and tokens[i][1] != "]":
                i += 1
        elif kind == "name" and value in LABEL_LIST_KEYWORDS and nxt == "(":
            while i < len(tokens) and tokens[i][1] != ")":
                i += 1
        elif kind == "name" and value not in PROMQL_KEYWORDS and nxt != "(":
            if nxt == "{":
                depth, j = 1, i + 2
                while j < len(tokens) and depth:
                    depth += {"{": 1, "}": -1}.get(tokens[j][1], 0)
                    j += 1
                out.append((value, query_text(tokens[i + 2:j - 1])))
                i = j
                continue
            out.append((value, None))
        i += 1
    return out


def query_text(tokens):
    return "".join(v for _, v in tokens)


def squash(text):
    """An expression without whitespace: the formatting of the rules file and the
    template may differ, the expression may not."""
    return re.sub(r"\s+", "", text)


def unscope(query):
    """The query without the release matchers the template adds to every selector."""
    q = squash(query)
    m = re.escape(squash(RELEASE_MATCHER))
    q = re.sub(r"\{" + m + r"\}", "", q)
    q = re.sub(r"," + m + r"(?=[,}])", "", q)
    q = re.sub(r"(?<=\{)" + m + r",", "", q)
    return q


def load_alerts():
    file = where(RULES)
    try:
        rules = yaml.load(RULES.read_text(), Loader=UniqueKeyLoader)
    except (OSError, yaml.YAMLError) as error:
        problem(file, "-", f"cannot read the rules: {error}")
        return None
    alerts = []
    for group in (rules or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" in rule:
                alerts.append(rule)
    return alerts


def check_analysis_template(file, template, alerts):
    at = ident(template)
    expect(template.get("apiVersion") == ARGO_API, file, f"{at} apiVersion", f"must be {ARGO_API}")
    args = get(template, "spec.args", []) or []
    arg_names = [a.get("name") for a in args if isinstance(a, dict)]
    expect(len(arg_names) == len(set(arg_names)) == len(args), file, f"{at} spec.args",
           "every argument needs a name, once")
    expect("release" in arg_names, file, f"{at} spec.args",
           "needs the argument `release`: the queries are scoped to the canary's release")
    metrics = get(template, "spec.metrics")
    if not expect(isinstance(metrics, list) and metrics, file, f"{at} spec.metrics", "missing"):
        return []
    names = [m.get("name") for m in metrics if isinstance(m, dict)]
    expect(len(names) == len(set(names)) == len(metrics), file, f"{at} spec.metrics", "every metric needs a name, once")
    for wanted in METRICS:
        expect(wanted in names, file, f"{at} spec.metrics",
               f"no metric {wanted!r} (the {METRICS[wanted]['alert']} query)")

    queries = {}
    for i, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            continue
        name = metric.get("name")
        field = f"{at} spec.metrics[{i}] ({name})"
        for key in ("interval", "initialDelay"):
            if key in metric:
                expect(parse_duration(metric[key]) is not None, file, f"{field}.{key}",
                       f"{metric[key]!r}: expected a duration like 1m")
        for key in ("count", "failureLimit", "inconclusiveLimit", "consecutiveErrorLimit"):
            if key in metric:
                expect(isinstance(metric[key], int) and metric[key] >= 0, file, f"{field}.{key}",
                       "expected a whole number >= 0")
        expect("inconclusiveLimit" in metric, file, f"{field}.inconclusiveLimit",
               "set it: how many empty or NaN measurements are tolerated before the run is Inconclusive")
        if isinstance(metric.get("count"), int) and metric["count"] > 1:
            expect("interval" in metric, file, f"{field}.interval", "a count above 1 needs an interval")
        provider = metric.get("provider") or {}
        if not expect(isinstance(provider, dict) and list(provider) == ["prometheus"], file, f"{field}.provider",
                      "expected exactly the prometheus provider"):
            continue
        prom = provider["prometheus"] or {}
        query = prom.get("query")
        address = prom.get("address")
        expect(isinstance(address, str) and address, file, f"{field}.provider.prometheus.address", "missing")
        if not expect(isinstance(query, str) and query.strip(), file, f"{field}.provider.prometheus.query", "missing"):
            continue
        for text, key in ((query, "query"), (address or "", "address")):
            for ref in re.findall(r"\{\{\s*args\.([\w-]+)\s*\}\}", text):
                expect(ref in arg_names, file, f"{field}.provider.prometheus.{key}",
                       f"uses {{{{args.{ref}}}}}, which is not an argument of the template")
        queries[name] = query

        # Scoped to the canary: every series selector names the release.
        try:
            found = selectors(query)
        except ValueError as error:
            problem(file, f"{field}.provider.prometheus.query", str(error))
            found = []
        for series, matchers in found:
            expect(matchers is not None and squash(RELEASE_MATCHER) in squash(matchers).split(","), file,
                   f"{field}.provider.prometheus.query",
                   f"the selector {series or '{...}'} needs {RELEASE_MATCHER}: the analysis must look at the "
                   "canary's release only")

        spec = METRICS.get(name)
        if not expect(spec, file, field, f"unknown metric: check.py knows {sorted(METRICS)}"):
            continue
        # The alert it asks about, from the rules file.
        candidates = [a for a in alerts if a.get("alert") == spec["alert"]
                      and ("evidence" not in spec or get(a, "labels.evidence") == spec["evidence"])]
        rule_where = f"alert {spec['alert']}" + (f" (evidence {spec['evidence']})" if "evidence" in spec else "")
        if not expect(len(candidates) == 1, where(RULES), rule_where,
                      f"expected exactly one such alert for {file}'s metric {name}, found {len(candidates)}"):
            continue
        rule = squash(candidates[0].get("expr", ""))
        got = unscope(query)
        if spec["kind"] == "threshold":
            m = re.fullmatch(r"([A-Za-z_:][\w:]*)>([0-9.]+(?:[eE][+-]?\d+)?)(and.*)", rule)
            if not expect(m, where(RULES), f"{rule_where}.expr",
                          "check.py expects `SERIES > THRESHOLD and ...`; teach it the new form"):
                continue
            threshold = float(m.group(2))
            wanted = m.group(1) + m.group(3)
            expect(got == wanted, file, f"{field}.provider.prometheus.query",
                   f"is not {rule_where}'s expression without its threshold, scoped to the release:\n"
                   f"      expected (whitespace and release matchers aside): {wanted}\n"
                   f"      found:                                            {got}")
            good, bad = threshold, threshold * 1.01 if threshold else 1e-9
        else:
            expect(rule in got, file, f"{field}.provider.prometheus.query",
                   f"does not contain {rule_where}'s expression (whitespace and release matchers aside):\n"
                   f"      expected within: {rule}\n      found: {got}")
            good, bad = 0.0, 1.0

        # The conditions, as Argo evaluates them.
        success, failure = metric.get("successCondition"), metric.get("failureCondition")
        both = expect(isinstance(success, str) and isinstance(failure, str), file, f"{field}",
                      "needs both successCondition and failureCondition: with one alone, Argo turns an empty "
                      "or NaN result into a verdict instead of Inconclusive")
        if not both:
            continue
        nan = math.nan
        cases = [
            ([], "Inconclusive", "an empty result (no series)"),
            ([nan], "Inconclusive", "a NaN result"),
            ([good, nan], "Inconclusive", "a good value and a NaN"),
            ([good], "Successful", f"{good:g} (at the rule's threshold)"),
            ([good, good], "Successful", f"two values of {good:g}"),
            ([bad], "Failed", f"{bad:g} (past the rule's threshold)"),
            ([good, bad], "Failed", f"{good:g} and {bad:g}"),
            ([nan, bad], "Failed", f"NaN and {bad:g}"),
        ]
        for result, expected, described in cases:
            phase = measurement_phase(success, failure, result)
            expect(phase == expected, file, f"{field}.successCondition/failureCondition",
                   f"for {described} Argo would record {phase}, not {expected}")
    return queries


def check_promql(file, template, queries):
    """Each query, its arguments filled in, parses (promtool check rules)."""
    promtool = shutil.which("promtool")
    if not promtool:
        if IN_CI:
            problem(file, "queries", "promtool is missing (Debian package: prometheus): CI checks the queries parse")
        else:
            print("check: warning: promtool not found (Debian package: prometheus): "
                  "the queries were not parsed", file=sys.stderr)
        return
    values = {a.get("name"): a.get("value", "0.1.0") for a in get(template, "spec.args", []) or []}
    rules = []
    for name, query in queries.items():
        filled = re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: str(values.get(m.group(1), "x")), query)
        rules.append({"record": "warden_analysis:" + re.sub(r"\W", "_", name), "expr": filled})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "analysis-queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "analysis", "rules": rules}]}))
        run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    expect(run.returncode == 0, file, f"{ident(template)} spec.metrics[*].provider.prometheus.query",
           "does not parse as PromQL:\n" + (run.stdout + run.stderr).strip())


def check_queries_on_data(file, template, queries):
    """Runs the queries, through the real rules, on made-up series (promtool test
    rules): release r2 leaks 5 MB/min of heap from its start and fails 8% of its
    requests at a p99 of 900 ms; r1 is healthy; r3 has almost no traffic. The queries
    must say Failed for r2, Successful for r1, and return nothing (Inconclusive) for
    r3, for an unknown release, and for the leak before 30 minutes of history."""
    promtool = shutil.which("promtool")
    if not promtool or not all(name in queries for name in METRICS):
        return  # check_promql already said why
    series = []
    for release, instance, heap, http in (("r2", "a:8080", "200e6+5e6x90", (552, 48, 570)),
                                          ("r1", "b:8080", "200e6x90", (600, 0, 600))):
        labels = f'job="warden", instance="{instance}", release="{release}"'
        series += [
            {"series": f'warden_heap_bytes{{kind="allocated", {labels}}}', "values": heap},
            {"series": f"process_resident_memory_bytes{{{labels}}}", "values": "300e6x90"},
            {"series": f"warden_memory_limit_bytes{{{labels}}}", "values": "1e9x90"},
        ]
        ok, failed, fast = http
        route = f'{labels}, http_route="/v1/items"'
        series += [
            {"series": f'http_server_request_duration_seconds_count{{{route}, http_response_status_code="200"}}',
             "values": f"0+{ok}x90"},
            {"series": f'http_server_request_duration_seconds_count{{{route}, http_response_status_code="500"}}',
             "values": f"0+{failed}x90"},
        ]
        for le, per_minute in (("0.1", fast), ("0.5", fast), ("1", ok + failed), ("+Inf", ok + failed)):
            series.append({"series": f'http_server_request_duration_seconds_bucket{{{route}, '
                                     f'http_response_status_code="200", le="{le}"}}',
                           "values": f"0+{per_minute}x90"})
    series.append({"series": 'http_server_request_duration_seconds_count{job="warden", instance="c:8080", '
                             'release="r3", http_route="/v1/items", http_response_status_code="500"}',
                   "values": "0+1x90"})

    def at(name, release, minute, value, wrap="{}"):
        query = re.sub(r"\{\{\s*args\.release\s*\}\}", release, queries[name])
        query = wrap.format(re.sub(r"\{\{\s*args\.[\w-]+\s*\}\}", "x", query))
        samples = [] if value is None else [{"labels": "{}", "value": value}]
        return {"expr": query, "eval_time": f"{minute}m", "exp_samples": samples}

    # Ratios and quantiles come out of rate() a few ulps off: compare them with the
    # thresholds instead (0.05 and 0.5, as in the rules), one series each.
    tests = [
        at("memory-leak-heap", "r2", 20, None),  # not 30 minutes of history yet
        at("memory-leak-heap", "r2", 35, 0),
        at("memory-leak-heap", "r2", 50, 1),
        at("memory-leak-heap", "r1", 60, 0),
        at("memory-leak-rss", "r2", 60, 0),
        at("memory-leak-rss", "r2", 20, None),
        at("memory-leak-heap", "unknown", 60, None),
        at("error-ratio", "r2", 30, 1, "count(({}) > 0.05)"),
        at("error-ratio", "r1", 30, 1, "count(({}) == 0)"),
        at("error-ratio", "r3", 30, None),
        at("latency-p99", "r2", 30, 1, "count(({}) > 0.5)"),
        at("latency-p99", "r1", 30, 1, "count(({}) <= 0.5)"),
        at("latency-p99", "r3", 30, None),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(RULES, Path(tmp) / "warden-rules.yml")
        path = Path(tmp) / "analysis-queries-test.yml"
        path.write_text(yaml.safe_dump({
            "rule_files": ["warden-rules.yml"], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
        }, width=1000))
        run = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, cwd=tmp)
    expect(run.returncode == 0, file, f"{ident(template)} spec.metrics[*].provider.prometheus.query",
           "gives the wrong answers on the made-up series (check_queries_on_data in check.py):\n"
           + (run.stdout + run.stderr).strip())


# --------------------------------------------------------------------------- main


def main():
    if kubernetes_validate is None:
        message = ("kubernetes-validate is missing: run scripts/test (it installs it into target/test-venv), "
                   "or pip install 'kubernetes-validate>=1.30,<2'")
        if IN_CI:
            print(f"check: {message}", file=sys.stderr)
            return 2
        print(f"check: warning: {message}; the Kubernetes schemas were not checked", file=sys.stderr)

    docs = {key: load_documents(HERE / name) for key, name in NAMES.items()}
    alerts = load_alerts()
    f_dep, f_roll, f_an, f_sec = (FILES[k] for k in ("deployment", "rollout", "analysis", "secret"))

    for key, file in ((k, FILES[k]) for k in ("deployment", "rollout", "secret")):
        for doc in docs[key]:
            if doc.get("apiVersion") in ("v1", "apps/v1", "policy/v1", "autoscaling/v2"):
                validate_schema(file, doc)
    for doc in docs["analysis"]:
        expect(doc.get("kind") in ("AnalysisTemplate", "ClusterAnalysisTemplate"), f_an, ident(doc),
               "only AnalysisTemplates belong in this file")

    secrets = find(docs["secret"], "Secret")
    expect(secrets and all(d.get("kind") == "Secret" for d in docs["secret"]), f_sec, "-",
           "expected only the example Secret")

    deployments = find(docs["deployment"], "Deployment")
    dep = deployments[0] if len(deployments) == 1 else None
    if expect(dep, f_dep, "-", f"expected one Deployment, found {len(deployments)}"):
        check_workload(f_dep, dep, secrets)
        expect(get(dep, "spec.revisionHistoryLimit", 10) >= 2, f_dep, f"{ident(dep)} spec.revisionHistoryLimit",
               "keep old ReplicaSets, or `kubectl rollout undo` has nothing to go back to")
    for svc in find(docs["deployment"], "Service"):
        check_service(f_dep, svc, get(dep, "spec.template", {}) if dep else {})
    expect(find(docs["deployment"], "Service", "warden-api"), f_dep, "-", "no Service warden-api")

    rollouts = find(docs["rollout"], "Rollout")
    rollout = rollouts[0] if len(rollouts) == 1 else None
    templates = docs["analysis"]
    if expect(rollout, f_roll, "-", f"expected one Rollout, found {len(rollouts)}"):
        services = find(docs["rollout"], "Service")
        for svc in services:
            check_service(f_roll, svc, get(rollout, "spec.template", {}))
        check_rollout(f_roll, rollout, services, templates, secrets)
        if dep:
            diff = first_difference(get(dep, "spec.template"), get(rollout, "spec.template"))
            expect(diff is None, f_roll, f"{ident(rollout)} spec.template.{diff}",
                   f"differs from the Deployment's pod template in {f_dep}: keep the two identical")
            for key in ("replicas", "selector", "revisionHistoryLimit", "minReadySeconds"):
                expect(get(dep, f"spec.{key}") == get(rollout, f"spec.{key}"), f_roll, f"{ident(rollout)} spec.{key}",
                       f"differs from the Deployment's in {f_dep}")
        for svc in find(docs["deployment"], "Service"):
            twin = find(docs["rollout"], "Service", get(svc, "metadata.name"))
            if twin:
                expect(twin[0] == svc, f_roll, ident(svc), f"differs from the same Service in {f_dep}")
    for doc in docs["rollout"]:
        expect(doc.get("kind") in ("Rollout", "Service"), f_roll, ident(doc), "unexpected kind in this file")

    analysis = find(templates, "AnalysisTemplate", "warden-canary")
    if expect(analysis, f_an, "-", "no AnalysisTemplate warden-canary") and alerts is not None:
        queries = check_analysis_template(f_an, analysis[0], alerts)
        if queries:
            before = len(problems)
            check_promql(f_an, analysis[0], queries)
            if len(problems) == before:
                check_queries_on_data(f_an, analysis[0], queries)

    for line in problems:
        print(line)
    print(f"ops/kubernetes: {passed} passed, {len(problems)} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
