#!/usr/bin/env python3
"""Generates src/protobuf_schema.rs: the protobuf field tables of the kinds the API server
decodes from `application/vnd.kubernetes.protobuf`.

Read from checkouts of k8s.io/api and k8s.io/apimachinery: each group's `generated.proto`
gives the field numbers and wire types; its `types.go` gives, per field, the JSON name, whether
the Go field is a pointer and whether its JSON tag has `omitempty`. The last two decide what
a zero scalar on the wire means: Go's protobuf marshaller always writes non-pointer fields, so
a zero there is "absent" when the JSON form would omit it, and a value when the field is a
pointer or is always written to JSON.

Usage: gen_protobuf_schema.py API_CHECKOUT APIMACHINERY_CHECKOUT TAG > src/protobuf_schema.rs
(TAG: the release both checkouts carry, e.g. kubernetes-1.37.0-beta.0)
"""
import re
import subprocess
import sys

API, MACHINERY, TAG = sys.argv[1], sys.argv[2], sys.argv[3]

# (proto package, checkout, directory)
PACKAGES = [
    ("k8s.io.apimachinery.pkg.apis.meta.v1", MACHINERY, "pkg/apis/meta/v1"),
    ("k8s.io.api.core.v1", API, "core/v1"),
    ("k8s.io.api.apps.v1", API, "apps/v1"),
    ("k8s.io.api.batch.v1", API, "batch/v1"),
    ("k8s.io.api.rbac.v1", API, "rbac/v1"),
    ("k8s.io.api.authentication.v1", API, "authentication/v1"),
    ("k8s.io.api.authorization.v1", API, "authorization/v1"),
    ("k8s.io.api.coordination.v1", API, "coordination/v1"),
]

# The kinds decoded: (apiVersion, kind, proto message).
KINDS = [
    ("v1", "Namespace", "k8s.io.api.core.v1.Namespace"),
    ("v1", "ConfigMap", "k8s.io.api.core.v1.ConfigMap"),
    ("v1", "Secret", "k8s.io.api.core.v1.Secret"),
    ("v1", "Service", "k8s.io.api.core.v1.Service"),
    ("v1", "Pod", "k8s.io.api.core.v1.Pod"),
    ("v1", "ServiceAccount", "k8s.io.api.core.v1.ServiceAccount"),
    ("v1", "Endpoints", "k8s.io.api.core.v1.Endpoints"),
    ("v1", "Event", "k8s.io.api.core.v1.Event"),
    ("v1", "Node", "k8s.io.api.core.v1.Node"),
    ("apps/v1", "Deployment", "k8s.io.api.apps.v1.Deployment"),
    ("apps/v1", "ReplicaSet", "k8s.io.api.apps.v1.ReplicaSet"),
    ("apps/v1", "StatefulSet", "k8s.io.api.apps.v1.StatefulSet"),
    ("apps/v1", "DaemonSet", "k8s.io.api.apps.v1.DaemonSet"),
    ("batch/v1", "Job", "k8s.io.api.batch.v1.Job"),
    ("batch/v1", "CronJob", "k8s.io.api.batch.v1.CronJob"),
    ("rbac.authorization.k8s.io/v1", "Role", "k8s.io.api.rbac.v1.Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "k8s.io.api.rbac.v1.ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "k8s.io.api.rbac.v1.RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "k8s.io.api.rbac.v1.ClusterRoleBinding"),
    ("authentication.k8s.io/v1", "TokenRequest", "k8s.io.api.authentication.v1.TokenRequest"),
    ("authentication.k8s.io/v1", "SelfSubjectReview", "k8s.io.api.authentication.v1.SelfSubjectReview"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", "k8s.io.api.authorization.v1.SelfSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SubjectAccessReview", "k8s.io.api.authorization.v1.SubjectAccessReview"),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview", "k8s.io.api.authorization.v1.SelfSubjectRulesReview"),
    ("coordination.k8s.io/v1", "Lease", "k8s.io.api.coordination.v1.Lease"),
]

# Messages of other packages that JSON writes as one value, not an object.
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
}
SCALARS = {"string": "Str", "int32": "Int", "int64": "Int", "bool": "Bool", "bytes": "Bytes"}


def show(repo, path):
    return subprocess.run(["git", "-C", repo, "show", f"{TAG}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def head(repo):
    return subprocess.run(["git", "-C", repo, "rev-parse", f"{TAG}^{{commit}}"], check=True,
                          capture_output=True, text=True).stdout.strip()


messages = {}   # full name -> [(num, proto name, card, type full name or scalar, map value)]
gofields = {}   # (package, go struct) -> {num: (json name, pointer, omitempty, inline)}
slices = set()  # full names of Go named []string types (JSON arrays, proto `items` wrappers)

FIELD = re.compile(r"^\s*(optional|repeated|required)\s+(\S+)\s+(\w+)\s*=\s*(\d+)\s*;")
MAP = re.compile(r"^\s*map<\s*string\s*,\s*(\S+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")
GOFIELD = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`")


def resolve(pkg, t):
    if t in SCALARS:
        return t
    if t.startswith("."):
        return t[1:]
    return f"{pkg}.{t}"


for pkg, repo, d in PACKAGES:
    proto = show(repo, f"{d}/generated.proto")
    cur = None
    for line in proto.splitlines():
        m = re.match(r"^message (\w+) \{", line)
        if m:
            cur = f"{pkg}.{m.group(1)}"
            messages[cur] = []
            continue
        if cur is None:
            continue
        if line.startswith("}"):
            cur = None
            continue
        m = FIELD.match(line)
        if m:
            card = "Repeated" if m.group(1) == "repeated" else "One"
            messages[cur].append((int(m.group(4)), m.group(3), card, resolve(pkg, m.group(2)), None))
            continue
        m = MAP.match(line)
        if m:
            messages[cur].append((int(m.group(3)), m.group(2), "Map", None,
                                  resolve(pkg, m.group(1))))
    types = show(repo, f"{d}/types.go")
    struct = None
    for line in types.splitlines():
        m = re.match(r"^type (\w+) \[\]string", line)
        if m:
            slices.add(f"{pkg}.{m.group(1)}")
        m = re.match(r"^type (\w+) struct \{", line)
        if m:
            struct = (pkg, m.group(1))
            gofields[struct] = {}
            continue
        if struct is None:
            continue
        if line.startswith("}"):
            struct = None
            continue
        m = GOFIELD.match(line)
        if not m:
            continue
        tag = m.group(3)
        pb = re.search(r'protobuf:"[a-z0-9]+,(\d+),', tag)
        js = re.search(r'json:"([^"]*)"', tag)
        if not pb or not js:
            continue
        name, _, opts = js.group(1).partition(",")
        inline = m.group(1) is None and name == ""
        gofields[struct][int(pb.group(1))] = (
            name, m.group(2).startswith("*"), "omitempty" in opts.split(","), inline)

# Reachable messages from the kinds, in a stable order.
order, index = [], {}


def visit(full):
    if full in index or full in SPECIAL or full in SCALARS:
        return
    if full not in messages:
        sys.exit(f"message {full} not found")
    index[full] = len(order)
    order.append(full)
    for _, _, _, t, mv in messages[full]:
        for x in (t, mv):
            if x:
                visit(x)


for _, _, msg in KINDS:
    visit(msg)


def ty(t):
    if t in SCALARS:
        return SCALARS[t]
    if t in SPECIAL:
        return SPECIAL[t]
    return f"Msg({index[t]})"


out = []
out.append("// @generated by node-agent/apiserver/tools/gen_protobuf_schema.py from")
out.append(f"// {TAG}: k8s.io/api {head(API)},")
out.append(f"// k8s.io/apimachinery {head(MACHINERY)}.")
out.append("// Do not edit: run the script again.")
out.append("//! The protobuf field tables of the kinds the API server decodes (see `protobuf.rs`).")
out.append("")
out.append("use super::protobuf::{Card::*, Field, Kind, Message, Ty::*};")
out.append("")
out.append("pub static KINDS: &[Kind] = &[")
for av, kind, msg in KINDS:
    out.append(f"    Kind {{ api_version: {av!r}, kind: {kind!r}, message: {index[msg]} }},".replace("'", '"'))
out.append("];")
out.append("")
out.append("pub static MESSAGES: &[Message] = &[")
for full in order:
    pkg, _, go = full.rpartition(".")
    go_f = gofields.get((pkg, go), {} if full in slices else None)
    if go_f is None:
        sys.exit(f"Go struct of {full} not found")
    short = full.replace("k8s.io.api.", "").replace("k8s.io.apimachinery.pkg.apis.", "")
    list_wrapper = "true" if full in slices else "false"
    out.append(f"    // {index[full]}")
    out.append(f"    Message {{ name: \"{short}\", list: {list_wrapper}, fields: &[")
    for num, pname, card, t, mv in messages[full]:
        jname, pointer, omitempty, inline = go_f.get(num, (pname, False, True, False))
        if num not in go_f and full not in slices:
            sys.exit(f"Go field {num} of {full} not found")
        keep_zero = "true" if (pointer or not omitempty) else "false"
        if card == "Map":
            c, tt = "Map", ty(mv)
        else:
            c, tt = card, ty(t)
        out.append(f"        Field {{ num: {num}, json: \"{jname}\", ty: {tt}, card: {c}, "
                   f"keep_zero: {keep_zero}, inline: {'true' if inline else 'false'} }},")
    out.append("    ] },")
out.append("];")
print("\n".join(out))
