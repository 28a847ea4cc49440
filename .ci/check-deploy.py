"""Syntax check of deploy/ (run by .ci/run; nothing there can be run on the build machine).

Every YAML file parses (all documents) with PyYAML and every JSON file with json; Kubernetes
manifests have apiVersion, kind and metadata.name (a Kustomization: its listed resources exist);
the compose file's services name an image or a build and their volumes are declared; the
kustomization's resources exist; the Dockerfile has only known instructions, its FROM first, and
every COPY --from names an earlier stage; `bash -n` for every shell script. Exits 1 naming the
file (and line where the parser gives one) on the first class of problem found.
"""

import json
import pathlib
import re
import subprocess
import sys

try:
    import yaml
except ImportError:
    sys.exit(
        "check-deploy: PyYAML is missing; .ci/run installs it "
        "(pip install -r .ci/requirements.txt into the CI venv)"
    )

ROOT = pathlib.Path(__file__).resolve().parent.parent / "deploy"
DOCKER_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}

errors = []
checked = 0


def fail(path, msg):
    errors.append(f"{path.relative_to(ROOT.parent)}: {msg}")


def check_k8s(path, docs):
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            fail(path, f"document {i + 1} is not a mapping")
            continue
        for key in ("apiVersion", "kind"):
            if key not in doc:
                fail(path, f"document {i + 1} has no {key}")
        if doc.get("kind") == "Kustomization":
            for res in doc.get("resources", []):
                if not (path.parent / res).exists():
                    fail(path, f"resource {res} does not exist")
        elif not (doc.get("metadata") or {}).get("name"):
            fail(path, f"document {i + 1} ({doc.get('kind')}) has no metadata.name")


def check_compose(path, doc):
    services = doc.get("services") if isinstance(doc, dict) else None
    if not services:
        fail(path, "no services")
        return
    declared = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        if "image" not in svc and "build" not in svc:
            fail(path, f"service {name} has neither image nor build")
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src and not src.startswith((".", "/", "$")) and src not in declared:
                fail(path, f"service {name} uses undeclared volume {src}")


def check_dockerfile(path):
    stages = []
    lines = path.read_text().splitlines()
    continued = False
    first = None
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if continued:
            continued = stripped.endswith("\\")
            continue
        if not stripped or stripped.startswith("#"):
            continue
        continued = stripped.endswith("\\")
        word = stripped.split()[0].upper()
        if word not in DOCKER_INSTRUCTIONS:
            fail(path, f"line {n}: unknown instruction {word}")
            continue
        if first is None:
            first = word
            if word not in ("FROM", "ARG"):
                fail(path, f"line {n}: the first instruction is {word}, not FROM")
        if word == "FROM":
            m = re.search(r"\bAS\s+(\S+)", stripped, re.IGNORECASE)
            stages.append(m.group(1) if m else str(len(stages)))
        m = re.search(r"--from=(\S+)", stripped)
        if word == "COPY" and m and m.group(1) not in stages[:-1]:
            fail(path, f"line {n}: COPY --from={m.group(1)} names no earlier stage")


for path in sorted(ROOT.rglob("*")):
    if not path.is_file():
        continue
    if path.suffix in (".yml", ".yaml"):
        checked += 1
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as e:
            fail(path, f"YAML: {e}")
            continue
        if "k8s" in path.parts:
            check_k8s(path, docs)
        elif path.name.startswith("docker-compose"):
            check_compose(path, docs[0])
        elif path.name == "prometheus.yml" and not (docs[0] or {}).get("scrape_configs"):
            fail(path, "no scrape_configs")
    elif path.suffix == ".json":
        checked += 1
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as e:
            fail(path, f"JSON: {e}")
    elif path.name == "Dockerfile":
        checked += 1
        check_dockerfile(path)
    elif path.suffix in (".sh", ".sbatch") or path.read_bytes().startswith(b"#!/"):
        checked += 1
        r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            fail(path, f"bash -n: {r.stderr.strip()}")

if errors:
    sys.exit("check-deploy: " + "\n  ".join(["deploy/ has errors:"] + errors))
if checked == 0:
    sys.exit("check-deploy: no files found under deploy/")
print(f"check-deploy: {checked} files in deploy/ parse")
