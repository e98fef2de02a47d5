#!/usr/bin/env python3
"""Renders kustomizations of deploy/kubernetes and validates every object offline.

    check.py render DIR            print DIR's kustomization rendered, as a JSON list of objects
    check.py validate DIR...       render each DIR and validate it; exit 1 naming every failure
    check.py file FILE...          validate the objects of plain manifest files
    check.py compare KUBECTL DIR...
                                   render each DIR here and with `KUBECTL kustomize DIR`; exit 1
                                   naming every object the two renderings disagree on

Rendering: the field's tool, `kubectl kustomize`, cannot be installed on this project's machines,
so this renders the subset of kustomize the manifests use. No package of the machines' Debian
sources (Debian 12 bookworm: main, updates, security) has a kubectl that renders the overlays:
Debian's `kubernetes-client` is kubectl 1.20.2 with kustomize v2, which refuses them (`patches`
with an inline patch and a target came later; it fails with "cannot unmarshal object into Go
struct field Kustomization.patchesStrategicMerge"), and there is no `kustomize` package. The
kubectl that the machine images of some kinds (polyglot among them) come with, package `kubectl`
1:528.0.0-0 (kubectl v1.32.4 with kustomize v5.5.0), is the Google Cloud CLI's, from Google's own
apt repository (`cloud-sdk-bookworm`): that source is disabled on these machines and is not one
of the registries they reach, so `apt-get install kubectl` has no candidate, and a machine without
it (another kind, a newer image) could not get it back. Where such a kubectl is there, `compare`
checks this renderer against it (tests/tests/kubernetes.rs does, for both overlays).

The subset, with kustomize v5's meaning: `resources` (files in or below the kustomization's
directory, as kustomize's load restrictor demands, and directories with a kustomization.yaml
anywhere), `namespace` (set on every object but the cluster-scoped kinds, replacing any namespace
it had), `images` (name -> newName/newTag/digest on every `containers` and `initContainers` list
at any depth: newName replaces the name, newTag the tag and any digest, digest the digest and any
tag, both give NAME:TAG@DIGEST), `replicas` (Deployments, StatefulSets, ReplicaSets and
ReplicationControllers by name) and `patches` with an inline JSON 6902 patch and a target by kind
and/or name, applied in kustomize's order (patches, namespace, replicas, images). A kustomization
with any other field is refused, so a manifest can never rely on a feature this check would
skip; so are a patch whose target matches nothing (kustomize ignores it: here it is a typo) and a
target that is not a plain name (kustomize reads a target's kind and name as regular
expressions). Objects come out in the order of `resources`; kubectl kustomize sorts them by kind,
which changes nothing applied.

Validation: Kubernetes' own kinds against the OpenAPI schemas of the Kubernetes version below
(kubernetes-validate, strict: unknown fields fail); Strimzi's and CloudNativePG's custom
resources against schemas/crds.json (strict as well).
"""

import copy
import json
import os
import re
import subprocess
import sys

import jsonpatch
import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33"
HERE = os.path.dirname(os.path.abspath(__file__))
ALLOWED = {"apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches"}
IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}
# Kinds that live outside any namespace: `namespace:` leaves them alone (kustomize knows them
# from the Kubernetes schema and takes every custom resource for a namespaced one).
CLUSTER_SCOPED = {
    "Namespace", "Node", "PersistentVolume", "StorageClass", "CSIDriver", "CSINode",
    "VolumeAttachment", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "APIService", "PriorityClass", "RuntimeClass", "IngressClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "CertificateSigningRequest", "FlowSchema", "PriorityLevelConfiguration",
}
# The kinds whose count kustomize's `replicas` sets.
SCALED = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class CheckError(Exception):
    """A kustomization or object that cannot be rendered or does not validate."""


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def render(directory):
    path = os.path.join(directory, "kustomization.yaml")
    if not os.path.isfile(path):
        raise CheckError(f"{directory}: no kustomization.yaml")
    docs = load_yaml_docs(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise CheckError(f"{path}: expected one mapping")
    k = docs[0]
    unknown = set(k) - ALLOWED
    if unknown:
        raise CheckError(f"{path}: fields this check does not render: {sorted(unknown)}")
    root = os.path.realpath(directory)
    objects = []
    for r in k.get("resources", []):
        target = os.path.normpath(os.path.join(directory, r))
        if os.path.isdir(target):
            objects.extend(render(target))
        elif os.path.isfile(target):
            # kustomize's load restrictor: a file lies in or below its kustomization's directory.
            if os.path.commonpath([root, os.path.realpath(target)]) != root:
                raise CheckError(f"{path}: resource {r} is not in or below {directory} "
                                 "(kustomize refuses it)")
            objects.extend(load_yaml_docs(target))
        else:
            raise CheckError(f"{path}: resource {r} does not exist")
    for p in k.get("patches", []):
        apply_patch(path, objects, p)
    ns = k.get("namespace")
    if ns:
        for o in objects:
            if o.get("kind") not in CLUSTER_SCOPED:
                o.setdefault("metadata", {})["namespace"] = ns
    for rep in k.get("replicas", []):
        hits = [o for o in objects
                if o.get("kind") in SCALED and o["metadata"]["name"] == rep["name"]]
        if not hits:
            raise CheckError(f"{path}: replicas: no {'/'.join(sorted(SCALED))} {rep['name']}")
        for o in hits:
            o["spec"]["replicas"] = rep["count"]
    for image in k.get("images", []):
        if set(image) - IMAGE_FIELDS or "name" not in image:
            raise CheckError(f"{path}: an image takes a name and newName, newTag or digest: "
                             f"{image}")
        for o in objects:
            for c in containers(o):
                name, tag, digest = split_image(c.get("image", ""))
                if name == image["name"]:
                    c["image"] = set_image(image, name, tag, digest)
    return objects


def split_image(image):
    """NAME[:TAG][@DIGEST] -> (NAME, TAG or None, DIGEST or None); a registry's port is NAME's."""
    image, _, digest = image.partition("@")
    if ":" in image.rsplit("/", 1)[-1]:
        name, tag = image.rsplit(":", 1)
        return name, tag, digest or None
    return image, None, digest or None


def set_image(image, name, tag, digest):
    """kustomize's `images`: newTag replaces the tag and drops a digest, digest the other way
    round, both set both; without either the image keeps its own."""
    name = image.get("newName", name)
    if "newTag" in image or "digest" in image:
        tag = str(image["newTag"]) if "newTag" in image else None
        digest = image.get("digest")
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def containers(o):
    """Every entry of a `containers` or `initContainers` list in `o`, at any depth: where
    kustomize sets images (a Pod, a workload's template, a CronJob's, a custom resource's)."""
    found = []
    if isinstance(o, dict):
        for key, value in o.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found.extend(c for c in value if isinstance(c, dict) and "image" in c)
            else:
                found.extend(containers(value))
    elif isinstance(o, list):
        for value in o:
            found.extend(containers(value))
    return found


def apply_patch(path, objects, p):
    target = p.get("target") or {}
    if set(target) - {"kind", "name"} or set(p) - {"target", "patch"}:
        raise CheckError(f"{path}: a patch takes a target (kind, name) and an inline patch")
    for field, value in target.items():
        if not isinstance(value, str) or not PLAIN_NAME.match(value):
            raise CheckError(f"{path}: patch target {field} {value!r} is not a plain name "
                             "(kustomize would read it as a regular expression)")
    ops = yaml.safe_load(p["patch"])
    hits = 0
    for i, o in enumerate(objects):
        if "kind" in target and o.get("kind") != target["kind"]:
            continue
        if "name" in target and o["metadata"]["name"] != target["name"]:
            continue
        try:
            objects[i] = jsonpatch.apply_patch(o, ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise CheckError(f"{path}: patch {target} on {o['metadata']['name']}: {e}") from e
        hits += 1
    if hits == 0:
        raise CheckError(f"{path}: patch target {target} matches nothing")


def kustomize(kubectl, directory):
    """DIR rendered by `KUBECTL kustomize`, the field's tool, as a list of objects."""
    try:
        out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True,
                             timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CheckError(f"{kubectl} kustomize {directory}: {e}") from e
    if out.returncode != 0:
        raise CheckError(f"{kubectl} kustomize {directory}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def differences(ours, theirs, where=""):
    """The paths at which two JSON values differ, one line each."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [d for key in sorted(set(ours) | set(theirs), key=str)
                for d in differences(ours.get(key), theirs.get(key), f"{where}.{key}")]
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [d for i, (a, b) in enumerate(zip(ours, theirs))
                for d in differences(a, b, f"{where}[{i}]")]
    if ours == theirs and type(ours) is type(theirs):
        return []
    return [f"{where or '(top)'}: {json.dumps(ours)} here, {json.dumps(theirs)} by kubectl"]


def compare(kubectl, directory):
    """(how this renderer and `KUBECTL kustomize` disagree on DIR, one line each, order aside;
    how many objects kubectl rendered)."""
    def by_id(objects):
        ids = {}
        for o in objects:
            meta = o.get("metadata", {})
            key = (o.get("apiVersion"), o.get("kind"), meta.get("namespace"), meta.get("name"))
            ids.setdefault(key, []).append(o)
        return ids
    theirs_list = kustomize(kubectl, directory)
    ours, theirs = by_id(render(directory)), by_id(theirs_list)
    failures = []
    for key in sorted(set(ours) | set(theirs), key=str):
        api, kind, ns, name = key
        label = f"{directory}: {kind}/{name} ({api}, namespace {ns})"
        a, b = ours.get(key, []), theirs.get(key, [])
        if len(a) != len(b):
            failures.append(f"{label}: {len(a)} here, {len(b)} by kubectl")
        else:
            failures += [f"{label}: {d}" for x, y in zip(a, b) for d in differences(x, y)]
    return failures, len(theirs_list)


def crd_schemas():
    with open(os.path.join(HERE, "schemas", "crds.json"), encoding="utf-8") as f:
        return json.load(f)["schemas"]


def validate(objects, source):
    """The failures of `objects`, one line each."""
    schemas = crd_schemas()
    failures = []
    seen = set()
    for o in objects:
        kind, api = o.get("kind"), o.get("apiVersion", "")
        name = o.get("metadata", {}).get("name", "?")
        label = f"{source}: {kind}/{name}"
        key = (api, kind, o.get("metadata", {}).get("namespace"), name)
        if key in seen:
            failures.append(f"{label}: defined twice")
        seen.add(key)
        crd = schemas.get(f"{api}/{kind}")
        try:
            group = api.rsplit("/", 1)[0] if "/" in api else ""
            if crd is not None:
                for e in jsonschema.Draft202012Validator(crd).iter_errors(o):
                    where = ".".join(str(p) for p in e.absolute_path) or "(top)"
                    failures.append(f"{label}: {where}: {e.message}")
            elif "." in group and not group.endswith(".k8s.io"):
                failures.append(f"{label}: no schema for {api} {kind}")
            else:
                kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(top)"
            failures.append(f"{label}: {where}: {e.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as e:
            failures.append(f"{label}: {e.message}")
    return failures


def main(argv):
    command = argv[1] if len(argv) > 1 else None
    if command not in ("render", "validate", "file", "compare") or len(argv) < (
            4 if command == "compare" else 3):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if command == "render":
            json.dump(render(argv[2]), sys.stdout)
            return 0
        failures = []
        count = 0
        if command == "compare":
            for target in argv[3:]:
                found, n = compare(argv[2], target)
                failures += found
                count += n
        else:
            for target in argv[2:]:
                objects = render(target) if command == "validate" else load_yaml_docs(target)
                count += len(objects)
                failures += validate(copy.deepcopy(objects), target)
    except CheckError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    for f in failures:
        print(f"ERROR {f}", file=sys.stderr)
    if command == "compare":
        print(f"{count} objects rendered by {argv[2]} kustomize: {len(failures)} difference(s) "
              "from this renderer")
    else:
        print(f"{count} objects checked against Kubernetes {KUBERNETES_VERSION} and the CRD "
              f"schemas: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
