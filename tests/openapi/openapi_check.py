#!/usr/bin/env python3
"""Reads docs/openapi.yaml for the tests that hold it to the server.

Commands:
  operations FILE          Prints the documented operations as a JSON array of
                           {method, path, secured, statuses, has_body, example}.
  check-schemas FILE       Checks every schema against the JSON Schema 2020-12 meta-schema
                           and every example against its schema.
  check FILE RECORDED      Checks responses and deliveries recorded from a running server
                           (a JSON object {"responses": [...], "deliveries": [...]}) against
                           the file: listed status, body schema, required headers.

Exits 1 and prints one line per problem when a check fails. Needs python3-yaml and, for the
two check commands, python3-jsonschema.
"""

import json
import sys

import yaml

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def resolve(doc, node):
    """Follows a local $ref such as #/components/responses/NotFound."""
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        parts = node["$ref"].lstrip("#/").split("/")
        node = doc
        for part in parts:
            node = node[part]
    return node


def operations(doc):
    out = []
    default_security = bool(doc.get("security"))
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            secured = bool(op["security"]) if "security" in op else default_security
            body = resolve(doc, op.get("requestBody")) if op.get("requestBody") else None
            example = None
            if body:
                media = body.get("content", {}).get("application/json", {})
                example = media.get("example")
            out.append({
                "method": method.upper(),
                "path": path,
                "secured": secured,
                "statuses": sorted(int(s) for s in op["responses"]),
                "has_body": body is not None,
                "example": example,
            })
    return out


def validator_for(doc, schema):
    """A 2020-12 validator for `schema` whose #/components/... references reach the document."""
    import jsonschema

    root = dict(schema) if isinstance(schema, dict) else {"allOf": [schema]}
    root["components"] = doc.get("components", {})
    root.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    return jsonschema.Draft202012Validator(root)


def schema_problems(doc, schema, value):
    validator = validator_for(doc, schema)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in validator.iter_errors(value)]


def walk(node, where=""):
    """Yields (where, node) for every dict in the document."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")


def check_schemas(doc):
    import jsonschema

    problems = []
    schemas = [(f"/components/schemas/{name}", s)
               for name, s in doc.get("components", {}).get("schemas", {}).items()]
    for where, node in walk(doc):
        if "schema" in node and isinstance(node["schema"], dict) and "/properties/" not in where:
            schemas.append((f"{where}/schema", node["schema"]))
    for where, schema in schemas:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.exceptions.SchemaError as e:
            problems.append(f"{where}: not a valid JSON Schema: {e.message}")
    # Examples next to a schema must match it.
    for where, node in walk(doc):
        if "/properties/" in where:
            continue
        if "schema" in node and "example" in node and isinstance(node["schema"], dict):
            for p in schema_problems(doc, node["schema"], node["example"]):
                problems.append(f"{where}/example: {p}")
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        if "example" in schema:
            for p in schema_problems(doc, schema, schema["example"]):
                problems.append(f"/components/schemas/{name}/example: {p}")
    return problems


def find_operation(doc, method, path):
    item = doc.get("paths", {}).get(path)
    if item is None:
        return None
    return item.get(method.lower())


def check_headers(doc, documented, headers, what):
    problems = []
    for name, spec in (documented or {}).items():
        spec = resolve(doc, spec)
        value = headers.get(name.lower())
        if value is None:
            if spec.get("required"):
                problems.append(f"{what}: header {name} is missing")
            continue
        for p in schema_problems(doc, spec.get("schema", {}), value):
            problems.append(f"{what}: header {name}: {p}")
    return problems


def check_response(doc, r):
    what = f"{r['method']} {r['path']} ({r['probe']}) -> {r['status']}"
    op = find_operation(doc, r["method"], r["path"])
    if op is None:
        return [f"{what}: the operation is not documented"]
    response = op["responses"].get(str(r["status"]))
    if response is None:
        return [f"{what}: status not documented (documented: {', '.join(op['responses'])})"]

    response = resolve(doc, response)
    headers = {k.lower(): v for k, v in r["headers"].items()}
    problems = check_headers(doc, response.get("headers"), headers, what)

    content = response.get("content")
    if not content or r["method"] == "HEAD":
        if r["body"] and r["method"] != "HEAD":
            problems.append(f"{what}: a body arrived where none is documented")
        return problems
    media_type = headers.get("content-type", "")
    media = content.get(media_type)
    if media is None:
        return problems + [f"{what}: Content-Type {media_type!r} is not documented "
                           f"(documented: {', '.join(content)})"]

    if media_type.startswith("application/json"):
        try:
            body = json.loads(r["body"])
        except ValueError as e:
            return problems + [f"{what}: the body is not JSON: {e}"]
    else:
        body = r["body"]
    for p in schema_problems(doc, media.get("schema", {}), body):
        problems.append(f"{what}: body {p}")
    return problems


def check_delivery(doc, d):
    headers = {k.lower(): v for k, v in d["headers"].items()}
    event_type = headers.get("revdesk-event-type", "")
    what = f"delivery of {event_type or '(no RevDesk-Event-Type)'}"
    hook = doc.get("webhooks", {}).get(event_type)
    if hook is None:
        return [f"{what}: no webhook of that name is documented"]
    op = hook["post"]
    params = {}
    for p in op.get("parameters", []):
        p = resolve(doc, p)
        if p["in"] == "header":
            params[p["name"]] = p
    problems = check_headers(doc, params, headers, what)
    media = resolve(doc, op["requestBody"])["content"]["application/json"]
    try:
        body = json.loads(d["body"])
    except ValueError as e:
        return problems + [f"{what}: the body is not JSON: {e}"]
    for p in schema_problems(doc, media["schema"], body):
        problems.append(f"{what}: body {p}")
    return problems


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    command, doc = argv[1], load(argv[2])
    if command == "operations":
        print(json.dumps(operations(doc), indent=1))
        return 0
    if command == "check-schemas":
        problems = check_schemas(doc)
    elif command == "check" and len(argv) == 4:
        with open(argv[3], encoding="utf-8") as f:
            recorded = json.load(f)
        problems = []
        for r in recorded.get("responses", []):
            problems += check_response(doc, r)
        for d in recorded.get("deliveries", []):
            problems += check_delivery(doc, d)
        print(f"checked {len(recorded.get('responses', []))} responses and "
              f"{len(recorded.get('deliveries', []))} deliveries")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
