"""OpenAI's published chat schemas (tests/fixtures/openai/chat-schemas.json)
as jsonschema validators.

The file is OpenAPI 3.1 with OpenAPI's `nullable: true`; each is turned into
a JSON Schema null alternative here, then a root schema is made per object
so that `#/components/schemas/...` references resolve inside it.
"""
import copy
import json
from pathlib import Path

import jsonschema

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "openai" / "chat-schemas.json"


def _denull(s):
    if isinstance(s, list):
        return [_denull(x) for x in s]
    if not isinstance(s, dict):
        return s
    s = {k: _denull(v) for k, v in s.items()}
    if s.pop("nullable", False):
        if isinstance(s.get("type"), str):
            s["type"] = [s["type"], "null"]
            if "enum" in s:
                s["enum"] = list(s["enum"]) + [None]
        elif "type" not in s:
            s = {"anyOf": [s, {"type": "null"}]}
    return s


def _load():
    doc = json.loads(FIXTURE.read_text())
    return {"components": _denull(doc["components"])}


_DOC = _load()


def validator(name):
    """A validator of the named component schema (e.g.
    CreateChatCompletionResponse)."""
    if name not in _DOC["components"]["schemas"]:
        raise KeyError("no schema %s in %s" % (name, FIXTURE))
    root = copy.deepcopy(_DOC)
    root["$ref"] = "#/components/schemas/" + name
    return jsonschema.Draft202012Validator(root)


def check(name, instance):
    """Raises AssertionError listing every schema violation of instance."""
    errs = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.path))
    if errs:
        lines = ["%s at %s: %s" % (name, "/".join(map(str, e.path)) or "(root)", e.message)
                 for e in errs[:10]]
        raise AssertionError("response does not match OpenAI's schema:\n" +
                             "\n".join(lines) + "\ninstance: " + json.dumps(instance)[:1500])
