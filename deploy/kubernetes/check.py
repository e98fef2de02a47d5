#!/usr/bin/env python3
"""Renders kustomizations of deploy/kubernetes and validates every object offline.

    check.py render DIR       print DIR's kustomization rendered, as a JSON list of objects
    check.py validate DIR...  render each DIR and validate it; exit 1 naming every failure
    check.py file FILE...     validate the objects of plain manifest files

Rendering: neither kustomize nor kubectl can be installed on this project's machines, so this
renders the subset of kustomize the manifests use, with kustomize's meaning: `resources` (files
and directories with a kustomization.yaml), `namespace`, `images` (name -> newName/newTag/digest),
`replicas` (Deployments by name) and `patches` with an inline JSON 6902 patch and a target by
kind and/or name. A kustomization with any other field is refused, so a manifest can never rely
on a feature this check would skip.

Validation: Kubernetes' own kinds against the OpenAPI schemas of the Kubernetes version below
(kubernetes-validate, strict: unknown fields fail); Strimzi's and CloudNativePG's custom
resources against schemas/crds.json (strict as well).
"""

import copy
import json
import os
import sys

import jsonpatch
import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33"
HERE = os.path.dirname(os.path.abspath(__file__))
ALLOWED = {"apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches"}
# Kinds that live outside any namespace: `namespace:` leaves them alone.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


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
    objects = []
    for r in k.get("resources", []):
        target = os.path.normpath(os.path.join(directory, r))
        if os.path.isdir(target):
            objects.extend(render(target))
        elif os.path.isfile(target):
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
    for image in k.get("images", []):
        for o in objects:
            for c in containers(o):
                name, tag = split_image(c.get("image", ""))
                if name == image["name"]:
                    new = image.get("newName", name)
                    if "digest" in image:
                        # kustomize: a digest replaces the tag.
                        c["image"] = f"{new}@{image['digest']}"
                        continue
                    new_tag = image.get("newTag", tag)
                    c["image"] = f"{new}:{new_tag}" if new_tag else new
    for rep in k.get("replicas", []):
        hits = [o for o in objects
                if o.get("kind") in ("Deployment", "StatefulSet")
                and o["metadata"]["name"] == rep["name"]]
        if not hits:
            raise CheckError(f"{path}: replicas: no Deployment {rep['name']}")
        for o in hits:
            o["spec"]["replicas"] = rep["count"]
    return objects


def split_image(image):
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = image.rsplit(":", 1)
        return name, tag
    return image, None


def containers(o):
    spec = o.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def apply_patch(path, objects, p):
    target = p.get("target") or {}
    if set(target) - {"kind", "name"} or set(p) - {"target", "patch"}:
        raise CheckError(f"{path}: a patch takes a target (kind, name) and an inline patch")
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
    if len(argv) < 3 or argv[1] not in ("render", "validate", "file"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[1] == "render":
            json.dump(render(argv[2]), sys.stdout)
            return 0
        failures = []
        count = 0
        for target in argv[2:]:
            objects = render(target) if argv[1] == "validate" else load_yaml_docs(target)
            count += len(objects)
            failures += validate(copy.deepcopy(objects), target)
    except CheckError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    for f in failures:
        print(f"ERROR {f}", file=sys.stderr)
    print(f"{count} objects checked against Kubernetes {KUBERNETES_VERSION} and the CRD schemas: "
          f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
