"""The rules of a package manifest that its JSON Schema cannot express.

They run after the schema passed, so every field has the shape the schema gives it. Each
rule returns (field, message) problems, the field a JSON path such as `tools[2].url`:

1. Tool names are unique, and none is also the name of a listed builtin tool.
2. Every builtin tool is granted in `permissions.platform_tools`.
3. A fixed model `{provider, name}` is listed as "provider/name" in `permissions.models`.
4. Sub-agents' names (`as`, else the package's slug) are unique.
5. A tool's `parameters` is a valid JSON Schema 2020-12, with local `$ref`s only and no
   `pattern`/`patternProperties`: the platform checks arguments in its own process, where a
   publisher's regular expression could stall it.
6. A python tool's top-level module is not a standard-library name: the sandbox imports the
   standard library first, so that module would run instead of the package's.
7. An HTTP tool's URL is http(s) with a fixed host in lower case (no IP address, user info,
   port or fragment) that its `allowed_hosts` allows; `{arg}` placeholders appear in the
   path or query only, and each is a required parameter.
8. Every host in a tool's `allowed_hosts` is granted in `permissions.http_hosts`.
9. Headers: not Host, Content-Length, Transfer-Encoding or Connection, no name twice in any
   case; values hold text and `{secret:NAME}` references only, each NAME granted in
   `permissions.secrets`; a tool that sends a secret uses https.
10. `body_template` strings' `{arg}` placeholders are declared parameters; no secrets there
   (secrets travel in headers only, so they never land in a URL or a logged body).
11. Pricing: the amounts the pricing model uses are given, no others; a paid model has one
   above 0.
"""

from __future__ import annotations

import re
import sys
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

Problem = tuple[str, str]  # (field as a JSON path, message)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_REFERENCE = re.compile(r"\{secret:([^{}]*)\}")
_SECRET_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# The schema's host pattern, without the wildcard: a URL names one real host.
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Headers the HTTP client derives itself; a package setting them could reach another
# virtual host than the allowed one or desynchronise the request framing.
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
PRICING_AMOUNTS: dict[str, tuple[str, ...]] = {
    "free": (),
    "per_call": ("per_call_micros",),
    "per_turn": ("per_turn_micros",),
    "per_1k_tokens": ("input_per_1k_micros", "output_per_1k_micros"),
}
_ALL_AMOUNTS = frozenset(name for names in PRICING_AMOUNTS.values() for name in names)
# Keywords whose value is a map of names to schemas, a list of schemas, or one schema.
_SCHEMA_MAPS = ("properties", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = (
    "items", "additionalProperties", "not", "if", "then", "else", "contains",
    "propertyNames", "unevaluatedItems", "unevaluatedProperties",
)  # fmt: skip


# What a tool's parameters may say. No references ($ref, $defs, $anchor, $id...), so every
# subschema is where it appears and the whole schema is as small as the manifest; no
# regular expressions (pattern, patternProperties): the platform checks arguments in its
# own process. Anything else is refused too, so nothing hides under an unknown key.
_SCHEMA_VALUES = (
    "type", "enum", "const", "required", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "minItems", "maxItems",
    "uniqueItems", "minProperties", "maxProperties", "minContains", "maxContains",
    "dependentRequired", "description", "title", "default", "examples", "format",
    "readOnly", "writeOnly", "deprecated", "contentMediaType", "contentEncoding",
    "$comment", "$schema",
)  # fmt: skip
_SCHEMA_KEYWORDS = frozenset((*_SCHEMA_VALUES, *_SCHEMA_MAPS, "allOf", "anyOf", "oneOf",
                              "prefixItems", "items", "additionalProperties", "not", "if",
                              "then", "else", "contains", "propertyNames", "unevaluatedItems",
                              "unevaluatedProperties"))  # fmt: skip
MAX_SCHEMA_NODES = 500
_CREDENTIAL_HEADER = re.compile(r"authorization|api[-_]?key|token|secret|password|cookie", re.I)


def json_path(*parts: str | int) -> str:
    """`tools[2].headers["X-Key"]` for ("tools", 2, "headers", "X-Key"); "$" for none."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += '["' + part.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return path or "$"


def host_allowed(host: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Whether `host` (a name, or itself a `*.` pattern) is within one of `patterns`.

    `*.example.com` allows `api.example.com` and `*.api.example.com`, not `example.com`.
    """
    return any(
        host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
        for pattern in patterns
    )


def consistency_problems(manifest: dict[str, Any]) -> list[Problem]:
    """Every broken rule of the module's list, in the manifest's order."""
    permissions = manifest.get("permissions", {})
    tools = manifest.get("tools", [])
    problems = _names(manifest, permissions)
    for index, tool in enumerate(tools):
        problems += _parameters(tool["parameters"], ("tools", index, "parameters"))
        if tool["kind"] == "python":
            problems += _entry_point(tool, index)
        else:
            problems += _http_tool(tool, index, permissions)
    problems += _pricing(manifest["pricing"])
    return problems


def _names(manifest: dict[str, Any], permissions: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    builtin = manifest.get("builtin_tools", [])
    seen: set[str] = set()
    for index, tool in enumerate(manifest.get("tools", [])):
        if tool["name"] in seen:
            problems.append((json_path("tools", index, "name"), "another tool has this name"))
        elif tool["name"] in builtin:
            problems.append((json_path("tools", index, "name"), "is a builtin tool's name"))
        seen.add(tool["name"])
    granted = permissions.get("platform_tools", [])
    for index, name in enumerate(builtin):
        if name not in granted:
            problems.append(
                (json_path("builtin_tools", index), f"{name} is not in permissions.platform_tools")
            )
    model = manifest["model"]
    if "provider" in model and f"{model['provider']}/{model['name']}" not in permissions.get(
        "models", []
    ):
        problems.append(
            ("model", f"{model['provider']}/{model['name']} is not in permissions.models")
        )
    aliases: set[str] = set()
    for index, sub_agent in enumerate(manifest.get("sub_agents", [])):
        alias = sub_agent.get("as") or sub_agent["package"].split("/")[1]
        if alias in aliases:
            problems.append(
                (json_path("sub_agents", index), f"another sub-agent is named {alias}; set 'as'")
            )
        aliases.add(alias)
    return problems


def _parameters(schema: dict[str, Any], where: tuple[str | int, ...]) -> list[Problem]:
    problems: list[Problem] = []

    nodes = 0

    def visit(node: Any, path: tuple[str | int, ...]) -> None:
        nonlocal nodes
        if not isinstance(node, dict):
            return
        nodes += 1
        if nodes == MAX_SCHEMA_NODES + 1:
            problems.append((json_path(*where), f"over {MAX_SCHEMA_NODES} subschemas"))
        for keyword in node:
            if keyword in ("pattern", "patternProperties"):
                problems.append((json_path(*path, keyword), "regular expressions are refused"))
            elif keyword not in _SCHEMA_KEYWORDS:
                problems.append(
                    (json_path(*path, keyword), "not a keyword tool parameters may use")
                )
        for keyword in _SCHEMA_MAPS:
            if isinstance(node.get(keyword), dict):
                for name, child in node[keyword].items():
                    visit(child, (*path, keyword, name))
        for keyword in _SCHEMA_LISTS:
            if isinstance(node.get(keyword), list):
                for index, child in enumerate(node[keyword]):
                    visit(child, (*path, keyword, index))
        for keyword in _SCHEMA_ONE:
            visit(node.get(keyword), (*path, keyword))

    visit(schema, where)
    if not problems:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            problems.append((json_path(*where, *exc.path), _short(exc.message)))
    return problems


def _entry_point(tool: dict[str, Any], index: int) -> list[Problem]:
    top_level = tool["entry_point"].split(":")[0].split(".")[0]
    if top_level in sys.stdlib_module_names:
        message = f"module {top_level} is a standard-library name; put the code in a package"
        return [(json_path("tools", index, "entry_point"), message)]
    return []


def _http_tool(tool: dict[str, Any], index: int, permissions: dict[str, Any]) -> list[Problem]:
    problems = _url(tool, index)
    granted = permissions.get("http_hosts", [])
    for host_index, host in enumerate(tool["allowed_hosts"]):
        if not host_allowed(host, granted):
            where = json_path("tools", index, "allowed_hosts", host_index)
            problems.append((where, f"{host} is not in permissions.http_hosts"))
    problems += _headers(tool, index, permissions.get("secrets", []))
    sends_secret = any(_SECRET_REFERENCE.search(v) for v in tool.get("headers", {}).values())
    if sends_secret and not tool["url"].startswith("https://"):
        problems.append(
            (json_path("tools", index, "url"), "a tool that sends a secret must use https")
        )
    if "body_template" in tool:
        declared = tool["parameters"].get("properties", {})
        for path, text in _strings_in(tool["body_template"], ("tools", index, "body_template")):
            if "{secret:" in text:
                problems.append((json_path(*path), "secrets go in headers only"))
            for name in _PLACEHOLDER.findall(text):
                if name not in declared:
                    problems.append(
                        (json_path(*path), f"placeholder {{{name}}} is not a parameter")
                    )
    return problems


def _url(tool: dict[str, Any], index: int) -> list[Problem]:
    where, url = json_path("tools", index, "url"), tool["url"]
    problems: list[Problem] = []
    try:
        host = urlsplit(url).netloc
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 literal
        return [(where, f"not a URL: {exc}")]
    if not _HOST.fullmatch(host):
        message = "needs a fixed DNS name in lower case as host: no IP address, user info or port"
        problems.append((where, message))
    elif not host_allowed(host, tool["allowed_hosts"]):
        problems.append((where, f"host {host} is not in allowed_hosts"))
    if "#" in url:
        problems.append((where, "must not have a fragment"))
    outside_placeholders = _PLACEHOLDER.sub("", url)
    if "{secret:" in url:
        problems.append((where, "secrets go in headers only"))
    elif "{" in outside_placeholders or "}" in outside_placeholders:
        problems.append((where, "has a brace that is not part of an {arg} placeholder"))
    required = tool["parameters"].get("required", [])
    for name in _PLACEHOLDER.findall(url):
        if name not in required:
            problems.append((where, f"placeholder {{{name}}} is not a required parameter"))
    return problems


def _headers(tool: dict[str, Any], index: int, secrets: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for name, value in tool.get("headers", {}).items():
        field = json_path("tools", index, "headers", name)
        if name.lower() in FORBIDDEN_HEADERS:
            problems.append((field, f"the platform sets {name} itself"))
        elif name.lower() in seen:
            problems.append((field, "another header has this name"))
        seen.add(name.lower())
        outside_references = _SECRET_REFERENCE.sub("", value)
        if "{" in outside_references or "}" in outside_references:
            problems.append((field, "may hold text and {secret:NAME} references only"))
        if _CREDENTIAL_HEADER.search(name) and not _SECRET_REFERENCE.search(value):
            # A manifest is public: a literal credential in it is published to everyone.
            problems.append((field, "a credential header takes a {secret:NAME} reference"))
        for secret in _SECRET_REFERENCE.findall(value):
            if not _SECRET_NAME.fullmatch(secret):
                problems.append((field, f"{secret!r} is not a secret name (A-Z, 0-9, _)"))
            elif secret not in secrets:
                problems.append((field, f"secret {secret} is not in permissions.secrets"))
    return problems


def _strings_in(value: Any, path: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, text) of every string value inside a JSON value; keys are not searched."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    return [found for key, child in items for found in _strings_in(child, (*path, key))]


def _pricing(pricing: dict[str, Any]) -> list[Problem]:
    model = pricing["model"]
    needed = PRICING_AMOUNTS[model]
    problems = [
        (json_path("pricing", name), f"does not apply to the {model} pricing model")
        for name in sorted(_ALL_AMOUNTS - set(needed))
        if name in pricing
    ]
    problems += [
        (json_path("pricing", name), f"is required by the {model} pricing model")
        for name in needed
        if name not in pricing
    ]
    if not problems and needed and not any(pricing[name] for name in needed):
        problems.append(
            (json_path("pricing", needed[0]), "a paid pricing model needs an amount above 0")
        )
    return problems


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
