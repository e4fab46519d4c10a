"""A package's manifest: `validate_manifest` (the JSON Schema, then the rules of
manifest_checks), a typed view of the result, and the canonical form its digest is taken of.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from beamclaw.errors import InvalidInput

from .manifest_checks import consistency_problems, json_path
from .manifest_schema import (
    MAX_ERRORS,
    MAX_MANIFEST_BYTES,
    json_problems,
    manifest_schema,
    schema_path,
    schema_problems,
)

__all__ = [
    "HttpTool",
    "Manifest",
    "ParsedVersions",
    "Permissions",
    "Pricing",
    "PythonTool",
    "SubAgent",
    "canonical_json",
    "check_versions",
    "manifest_digest",
    "manifest_schema",  # the JSON Schema, for the API docs to publish
    "schema_path",
    "validate_manifest",
]


@dataclass(frozen=True)
class PythonTool:
    index: int  # position in the manifest's `tools`: errors name `tools[index]`
    name: str
    description: str
    parameters: dict[str, Any]
    entry_point: str  # "package.module:function"

    @property
    def module(self) -> str:
        return self.entry_point.split(":")[0]

    @property
    def function(self) -> str:
        return self.entry_point.split(":")[1]

    @property
    def module_files(self) -> tuple[str, str]:
        """The artifact paths the module may be at: `a/b.py` or `a/b/__init__.py`."""
        base = self.module.replace(".", "/")
        return f"{base}.py", f"{base}/__init__.py"


@dataclass(frozen=True)
class HttpTool:
    index: int
    name: str
    description: str
    parameters: dict[str, Any]
    method: str
    url: str  # a template: {arg} placeholders, percent-encoded when filled
    allowed_hosts: tuple[str, ...]
    headers: dict[str, str]  # values may hold {secret:NAME}
    body_template: dict[str, Any] | None  # sent as JSON; {arg} placeholders in its strings


@dataclass(frozen=True)
class SubAgent:
    index: int
    publisher: str
    package: str  # the slug
    version_spec: str  # text; parsed by the caller (see check_versions)
    name: str  # `as`, else the package's slug


@dataclass(frozen=True)
class Permissions:
    models: tuple[str, ...] = ()  # "provider/name"
    platform_tools: tuple[str, ...] = ()
    http_hosts: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    memory: bool = False
    max_run_seconds: int | None = None  # None: the platform's default


@dataclass(frozen=True)
class Pricing:
    model: str  # free, per_call, per_1k_tokens, per_turn
    per_call_micros: int = 0
    per_turn_micros: int = 0
    input_per_1k_micros: int = 0
    output_per_1k_micros: int = 0


@dataclass(frozen=True)
class Manifest:
    """A validated manifest; `data` is it as JSON, to be stored as it is and never changed."""

    data: dict[str, Any]
    tools: tuple[PythonTool | HttpTool, ...] = field(init=False)

    def __post_init__(self) -> None:
        tools = tuple(_tool(index, tool) for index, tool in enumerate(self.data.get("tools", [])))
        object.__setattr__(self, "tools", tools)

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def version(self) -> str:
        """SemVer text; parsed by the caller (see check_versions)."""
        return self.data["version"]

    @property
    def system_prompt(self) -> str:
        return self.data["system_prompt"]

    @property
    def fixed_model(self) -> tuple[str, str] | None:
        """(provider, model name), or None when the installer chooses the model."""
        model = self.data["model"]
        return None if "choice" in model else (model["provider"], model["name"])

    @property
    def builtin_tools(self) -> tuple[str, ...]:
        return tuple(self.data.get("builtin_tools", []))

    @property
    def python_tools(self) -> tuple[PythonTool, ...]:
        return tuple(tool for tool in self.tools if isinstance(tool, PythonTool))

    @property
    def http_tools(self) -> tuple[HttpTool, ...]:
        return tuple(tool for tool in self.tools if isinstance(tool, HttpTool))

    @property
    def sub_agents(self) -> tuple[SubAgent, ...]:
        found = []
        for index, entry in enumerate(self.data.get("sub_agents", [])):
            publisher, slug = entry["package"].split("/")
            found.append(SubAgent(index, publisher, slug, entry["version"], entry.get("as", slug)))
        return tuple(found)

    @property
    def permissions(self) -> Permissions:
        granted = self.data.get("permissions", {})
        lists = ("models", "platform_tools", "http_hosts", "secrets")
        return Permissions(
            **{name: tuple(granted.get(name, ())) for name in lists},
            memory=granted.get("memory", False),
            max_run_seconds=granted.get("max_run_seconds"),
        )

    @property
    def pricing(self) -> Pricing:
        return Pricing(**self.data["pricing"])

    def canonical_json(self) -> bytes:
        return canonical_json(self.data)

    @functools.cached_property
    def digest(self) -> str:
        return manifest_digest(self.data)


def _tool(index: int, tool: dict[str, Any]) -> PythonTool | HttpTool:
    common = (index, tool["name"], tool["description"], tool["parameters"])
    if tool["kind"] == "python":
        return PythonTool(*common, entry_point=tool["entry_point"])
    return HttpTool(
        *common,
        method=tool["method"],
        url=tool["url"],
        allowed_hosts=tuple(tool["allowed_hosts"]),
        headers=dict(tool.get("headers", {})),
        body_template=tool.get("body_template"),
    )


def canonical_json(manifest: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (not \\u escapes): one byte string per manifest.

    Keys sort by code point and numbers print as Python writes them; a digest of this form
    is stable for the same JSON value, whatever order its keys were written in.
    """
    text = json.dumps(
        manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON."""
    return hashlib.sha256(canonical_json(manifest)).hexdigest()


def validate_manifest(data: object) -> Manifest:
    """The manifest, validated; or InvalidInput with every problem found.

    The codes: `manifest_too_deep`, `manifest_too_large`, else `invalid_manifest`, whose
    message starts with the first bad field and whose details are
    `{"field": <first>, "errors": [{"field", "message"}, ...]}` (at most MAX_ERRORS).
    Versions are only checked for their form here; see check_versions.
    """
    problems = list(json_problems(data))[:MAX_ERRORS]
    if not problems:
        size = len(canonical_json(data))  # type: ignore[arg-type]  # checked to be JSON
        if size > MAX_MANIFEST_BYTES:
            raise InvalidInput(
                "manifest_too_large",
                f"The manifest is {size} bytes as canonical JSON; the limit is "
                f"{MAX_MANIFEST_BYTES}.",
                details={"max_bytes": MAX_MANIFEST_BYTES},
            )
        problems = schema_problems(data)
    if not problems:
        problems = consistency_problems(data)  # type: ignore[arg-type]  # the schema passed
    if problems:
        errors = [{"field": where, "message": message} for where, message in problems]
        first = errors[0]
        raise InvalidInput(
            "invalid_manifest",
            f"{first['field']}: {first['message']}",
            details={"field": first["field"], "errors": errors[:MAX_ERRORS]},
        )
    return Manifest(json.loads(canonical_json(data)))  # type: ignore[arg-type]


_Version = TypeVar("_Version")
_Spec = TypeVar("_Spec")


@dataclass(frozen=True)
class ParsedVersions(Generic[_Version, _Spec]):
    version: _Version
    min_platform_version: _Version | None
    sub_agent_specs: tuple[_Spec, ...]  # in the order of Manifest.sub_agents


def check_versions(
    manifest: Manifest,
    *,
    parse_version: Callable[[str], _Version],
    parse_spec: Callable[[str], _Spec],
) -> ParsedVersions[_Version, _Spec]:
    """The one place a manifest's version texts are parsed strictly.

    The publish service calls it with marketplace.versions' parse_version and parse_spec,
    after validate_manifest (which checks only that they look like versions). Their
    InvalidInput (`invalid_version`, `invalid_version_spec`) comes back naming the field.
    """

    def parsed(parse: Callable[[str], Any], text: str, where: str) -> Any:
        try:
            return parse(text)
        except InvalidInput as exc:
            details = {**exc.details, "field": where}
            raise InvalidInput(exc.code, f"{where}: {exc.message}", details=details) from exc

    minimum = manifest.data.get("min_platform_version")
    return ParsedVersions(
        version=parsed(parse_version, manifest.version, "version"),
        min_platform_version=(
            None if minimum is None else parsed(parse_version, minimum, "min_platform_version")
        ),
        sub_agent_specs=tuple(
            parsed(parse_spec, sub.version_spec, json_path("sub_agents", sub.index, "version"))
            for sub in manifest.sub_agents
        ),
    )
