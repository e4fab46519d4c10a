"""Publishing validates a package's manifest: each mistake is refused with a stable code and
names its field as a JSON path; a valid manifest comes back typed, with a stable digest."""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator

from beamclaw.errors import InvalidInput
from marketplace.manifest import (
    canonical_json,
    check_versions,
    manifest_digest,
    manifest_schema,
    schema_path,
    validate_manifest,
)
from marketplace.manifest_schema import MAX_ERRORS

BASE = {
    "format": 1,
    "name": "word-helper",
    "version": "1.2.0",
    "summary": "Counts words and looks them up.",
    "description": "A test package.",
    "system_prompt": "You help with words.",
    "model": {"provider": "openai", "name": "gpt-4o-mini"},
    "builtin_tools": ["current_time"],
    "tools": [
        {
            "kind": "python",
            "name": "count_words",
            "description": "Count words.",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
            "entry_point": "helper.words:count_words",
        },
        {
            "kind": "http",
            "name": "search",
            "description": "Search the dictionary.",
            "parameters": {
                "type": "object",
                "properties": {"word": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["word"],
            },
            "method": "POST",
            "url": "https://api.example.com/v1/search/{word}",
            "allowed_hosts": ["api.example.com"],
            "headers": {"X-Api-Key": "{secret:EXAMPLE_KEY}", "Accept": "application/json"},
            "body_template": {"limit": "{limit}", "options": {"exact": True}},
        },
    ],
    "sub_agents": [{"package": "acme/translator", "version": "^2.1.0"}],
    "permissions": {
        "models": ["openai/gpt-4o-mini"],
        "platform_tools": ["current_time"],
        "http_hosts": ["api.example.com"],
        "secrets": ["EXAMPLE_KEY"],
        "memory": True,
        "max_run_seconds": 120,
    },
    "pricing": {"model": "per_1k_tokens", "input_per_1k_micros": 0, "output_per_1k_micros": 50},
    "changelog": "Search takes a limit.",
}


def manifest(**changes: object) -> dict:
    """A copy of BASE; `changes` maps a dotted path ("tools.1.url") to a new value, or to
    DELETE to remove the key."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return data


DELETE = object()


def refusal(data: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        validate_manifest(data)
    return caught.value


def assert_refused(data: object, field: str, words: str = "") -> InvalidInput:
    error = refusal(data)
    assert error.code == "invalid_manifest"
    assert error.details["field"] == field, error.details
    assert error.message.startswith(f"{field}: ")
    assert words in error.details["errors"][0]["message"], error.details
    return error


def test_a_valid_manifest_comes_back_typed():
    valid = validate_manifest(manifest())

    assert valid.name == "word-helper"
    assert valid.version == "1.2.0"
    assert valid.fixed_model == ("openai", "gpt-4o-mini")
    (python_tool,) = valid.python_tools
    assert python_tool.module == "helper.words"
    assert python_tool.function == "count_words"
    assert python_tool.module_files == ("helper/words.py", "helper/words/__init__.py")
    (http_tool,) = valid.http_tools
    assert (http_tool.index, http_tool.method, http_tool.allowed_hosts) == (
        1,
        "POST",
        ("api.example.com",),
    )
    (sub_agent,) = valid.sub_agents
    assert (sub_agent.publisher, sub_agent.package, sub_agent.name) == (
        "acme",
        "translator",
        "translator",
    )
    assert valid.permissions.secrets == ("EXAMPLE_KEY",)
    assert valid.permissions.max_run_seconds == 120
    assert valid.pricing.output_per_1k_micros == 50
    assert valid.digest == manifest_digest(manifest())


def test_the_least_manifest_is_valid_and_grants_nothing():
    least = {
        "format": 1,
        "name": "x",
        "version": "0.1.0",
        "summary": "s",
        "system_prompt": "p",
        "model": {"choice": "installer"},
        "pricing": {"model": "free"},
    }
    valid = validate_manifest(least)
    assert valid.fixed_model is None
    assert valid.tools == ()
    assert valid.permissions.http_hosts == ()
    assert valid.permissions.memory is False
    assert valid.permissions.max_run_seconds is None


def test_the_digest_does_not_depend_on_key_order():
    def reversed_keys(value: object) -> object:
        if isinstance(value, dict):
            return {key: reversed_keys(value[key]) for key in reversed(list(value))}
        if isinstance(value, list):
            return [reversed_keys(each) for each in value]
        return value

    shuffled = reversed_keys(manifest())
    assert json.dumps(shuffled) != json.dumps(manifest())
    assert manifest_digest(shuffled) == manifest_digest(manifest())
    assert validate_manifest(shuffled).digest == validate_manifest(manifest()).digest
    assert manifest_digest(manifest(summary="Another summary.")) != manifest_digest(manifest())


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'.encode()


def test_the_schema_file_is_a_valid_draft_2020_12_schema_and_handed_out_as_a_copy():
    schema = json.loads(schema_path().read_text())
    Draft202012Validator.check_schema(schema)
    published = manifest_schema()
    assert published == schema
    published["properties"].clear()
    assert refusal(manifest(extra=1)).details["field"] == "extra"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ([], "$", "must be an object"),
        (manifest(name=5), "name", "must be a string"),
        (manifest(tools="count_words"), "tools", "must be an array"),
        (manifest(**{"permissions.memory": "yes"}), "permissions.memory", "true or false"),
        (manifest(**{"permissions.max_run_seconds": 0}), "permissions.max_run_seconds", "1"),
        (manifest(**{"pricing.output_per_1k_micros": 2.0}), "pricing.output_per_1k_micros", ""),
        (manifest(format=2), "format", "must be 1"),
        (manifest(version="1.0"), "version", "SemVer"),
        (manifest(name="Word_Helper"), "name", "slug"),
        (manifest(name="word-helper\n"), "name", "slug"),
        (manifest(summary="two\nlines"), "summary", "one line"),
        (manifest(description="x" * 20_001), "description", "at most 20000 characters"),
        (manifest(model={"choice": "publisher"}), "model.choice", '"installer"'),
        (manifest(model={"provider": "openai"}), "model.name", "is required"),
        (manifest(**{"tools.0.kind": "shell"}), "tools[0].kind", '"python", "http"'),
        (manifest(**{"tools.0.entry_point": DELETE}), "tools[0].entry_point", "is required"),
        (manifest(**{"tools.0.entry_point": "helper/words.py"}), "tools[0].entry_point", ""),
        (manifest(**{"tools.1.method": "GET"}), "tools[1].method", '"POST"'),
        (manifest(**{"tools.1.url": "ftp://api.example.com/x"}), "tools[1].url", "http(s)"),
        (manifest(**{"sub_agents.0.package": "translator"}), "sub_agents[0].package", "slugs"),
        (manifest(builtin_tools=["current_time", "current_time"]), "builtin_tools", "twice"),
    ],
)
def test_a_value_of_the_wrong_type_or_form_is_refused_naming_its_field(data, field, words):
    assert_refused(data, field, words)


def test_an_unknown_key_is_refused_at_any_level():
    assert_refused(manifest(descripton="typo"), "descripton", "is not a known field")
    assert_refused(manifest(**{"permissions.network": True}), "permissions.network", "known")
    assert_refused(manifest(**{"tools.0.url": "https://x.com"}), "tools[0].url", "known")
    assert_refused(manifest(**{"pricing.per_token_micros": 1}), "pricing.per_token_micros")


def test_a_bad_tool_name_is_refused():
    assert_refused(manifest(**{"tools.0.name": "count words"}), "tools[0].name", "a tool name")
    assert_refused(manifest(**{"tools.0.name": "x" * 65}), "tools[0].name", "a tool name")


def test_every_error_is_listed_up_to_the_cap():
    error = refusal(manifest(name=1, summary=2, extra=3))
    assert error.details["errors"] == [
        {"field": "extra", "message": "is not a known field"},
        {"field": "name", "message": "must be a string"},
        {"field": "summary", "message": "must be a string"},
    ]
    error = refusal(manifest(**{f"unknown{i}": i for i in range(30)}))
    assert len(error.details["errors"]) == MAX_ERRORS


def test_tool_names_are_unique_and_not_a_builtin_tools_name():
    assert_refused(manifest(**{"tools.1.name": "count_words"}), "tools[1].name", "another tool")
    assert_refused(manifest(**{"tools.0.name": "current_time"}), "tools[0].name", "builtin")


def test_a_builtin_tool_must_be_granted_and_a_fixed_model_listed():
    data = manifest(builtin_tools=["current_time", "http_fetch"])
    assert_refused(data, "builtin_tools[1]", "http_fetch is not in permissions.platform_tools")
    data = manifest(model={"provider": "anthropic", "name": "claude-x"})
    assert_refused(data, "model", "anthropic/claude-x is not in permissions.models")


def test_an_http_tools_hosts_must_be_allowed_and_granted():
    data = manifest(**{"tools.1.url": "https://api.other.com/v1/search/{word}"})
    assert_refused(data, "tools[1].url", "host api.other.com is not in allowed_hosts")

    data = manifest(**{"tools.1.allowed_hosts": ["api.example.com", "cdn.example.com"]})
    assert_refused(data, "tools[1].allowed_hosts[1]", "not in permissions.http_hosts")

    wildcard = manifest(
        **{"tools.1.allowed_hosts": ["*.example.com"], "permissions.http_hosts": ["*.example.com"]}
    )
    validate_manifest(wildcard)
    bare = manifest(**{"tools.1.url": "https://example.com/{word}"})
    bare["tools"][1]["allowed_hosts"] = bare["permissions"]["http_hosts"] = ["*.example.com"]
    assert_refused(bare, "tools[1].url", "host example.com is not in allowed_hosts")


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/{word}",
        "https://[::1]/{word}",
        "https://user@api.example.com/{word}",
        "https://api.example.com:8443/{word}",
        "https://API.example.com/{word}",
        "https://{word}.example.com/",
    ],
)
def test_the_url_host_is_a_fixed_lower_case_name(url):
    assert_refused(manifest(**{"tools.1.url": url}), "tools[1].url", "fixed DNS name")


def test_ip_addresses_and_inner_wildcards_are_not_hosts():
    for host in ("10.0.0.1", "api.*.example.com", "localhost"):
        data = manifest(**{"tools.1.allowed_hosts": [host]})
        assert_refused(data, "tools[1].allowed_hosts[0]", "DNS name")


def test_placeholders_must_be_declared_parameters():
    data = manifest(**{"tools.1.url": "https://api.example.com/v1/{lang}/{word}"})
    assert_refused(data, "tools[1].url", "placeholder {lang} is not a required parameter")
    data = manifest(**{"tools.1.url": "https://api.example.com/v1/search?n={limit}&q={word}"})
    assert_refused(data, "tools[1].url", "{limit} is not a required parameter")
    data = manifest(**{"tools.1.body_template": {"query": {"text": "{text}"}}})
    assert_refused(data, "tools[1].body_template.query.text", "{text} is not a parameter")
    data = manifest(**{"tools.1.url": "https://api.example.com/v1/{word"})
    assert_refused(data, "tools[1].url", "brace")


def test_secrets_must_be_granted_and_travel_only_in_headers_over_https():
    data = manifest(**{"tools.1.headers": {"X-Api-Key": "{secret:OTHER_KEY}"}})
    assert_refused(data, 'tools[1].headers["X-Api-Key"]', "OTHER_KEY is not in permissions")
    data = manifest(**{"tools.1.url": "https://api.example.com/{word}?key={secret:EXAMPLE_KEY}"})
    assert_refused(data, "tools[1].url", "secrets go in headers only")
    data = manifest(**{"tools.1.body_template": {"key": "{secret:EXAMPLE_KEY}"}})
    assert_refused(data, "tools[1].body_template.key", "secrets go in headers only")
    data = manifest(**{"tools.1.url": "http://api.example.com/{word}"})
    assert_refused(data, "tools[1].url", "https")
    data = manifest(**{"tools.1.headers": {"Authorization": "Bearer {token}"}})
    assert_refused(data, "tools[1].headers.Authorization", "{secret:NAME} references only")


def test_headers_the_platform_sets_are_refused():
    data = manifest(**{"tools.1.headers": {"Host": "internal.example.com"}})
    assert_refused(data, "tools[1].headers.Host", "sets Host itself")
    data = manifest(**{"tools.1.headers": {"accept": "a", "Accept": "b"}})
    assert_refused(data, "tools[1].headers.Accept", "another header")
    data = manifest(**{"tools.1.headers": {"X Key": "a"}})
    assert_refused(data, 'tools[1].headers["X Key"]', "not an allowed name")


@pytest.mark.parametrize(
    ("pricing", "field", "words"),
    [
        ({"model": "per_call"}, "pricing.per_call_micros", "is required by the per_call"),
        ({"model": "free", "per_turn_micros": 5}, "pricing.per_turn_micros", "does not apply"),
        ({"model": "per_turn", "per_turn_micros": 0}, "pricing.per_turn_micros", "above 0"),
        (
            {"model": "per_1k_tokens", "input_per_1k_micros": 1},
            "pricing.output_per_1k_micros",
            "is required",
        ),
        ({"model": "per_call", "per_call_micros": -1}, "pricing.per_call_micros", "at least 0"),
        ({"model": "monthly"}, "pricing.model", "must be one of"),
    ],
)
def test_pricing_amounts_must_fit_the_pricing_model(pricing, field, words):
    assert_refused(manifest(pricing=pricing), field, words)


def test_tool_parameters_must_be_a_safe_json_schema():
    def with_text_schema(schema: dict) -> dict:
        return manifest(**{"tools.0.parameters.properties.text": schema})

    data = with_text_schema({"type": "string", "pattern": "^(a+)+$"})
    assert_refused(data, "tools[0].parameters.properties.text.pattern", "regular expressions")
    data = with_text_schema({"$ref": "https://schemas.example.com/text.json"})
    assert_refused(data, 'tools[0].parameters.properties.text["$ref"]', "not a keyword")
    data = with_text_schema({"$ref": "#/properties/other"})  # no references at all
    assert_refused(data, 'tools[0].parameters.properties.text["$ref"]', "not a keyword")
    data = with_text_schema({"type": "strin"})
    assert refusal(data).details["field"].startswith("tools[0].parameters")
    assert_refused(
        manifest(**{"tools.0.parameters": {"type": "string"}}), "tools[0].parameters.type"
    )
    # An argument may be called "pattern": only the keyword is refused.
    validate_manifest(manifest(**{"tools.0.parameters.properties.pattern": {"type": "string"}}))


def test_an_entry_point_in_a_standard_library_module_is_refused():
    data = manifest(**{"tools.0.entry_point": "json:loads"})
    assert_refused(data, "tools[0].entry_point", "standard-library")


def test_sub_agents_names_are_unique():
    data = manifest(
        sub_agents=[
            {"package": "acme/translator", "version": "^2.1.0"},
            {"package": "other/translator", "version": "1.x"},
        ]
    )
    assert_refused(data, "sub_agents[1]", "set 'as'")
    data["sub_agents"][1]["as"] = "other-translator"
    assert validate_manifest(data).sub_agents[1].name == "other-translator"


def test_values_json_cannot_hold_or_postgresql_cannot_store_are_refused():
    assert_refused(manifest(summary="a\x00b"), "summary", "NUL")
    assert_refused(manifest(description="\ud800"), "description", "surrogate")
    assert_refused(
        manifest(**{"tools.0.parameters.minimum": float("nan")}), "tools[0].parameters.minimum"
    )
    assert_refused(manifest(builtin_tools={"current_time"}), "builtin_tools", "not a JSON value")
    assert_refused(manifest(**{"tools.0.parameters.maximum": 2**70}), "tools[0].parameters.maximum")
    assert_refused({**manifest(), 1: "x"}, "$", "keys must be strings")


def test_an_oversized_manifest_is_refused():
    huge = manifest(**{"tools.0.parameters.description": "x" * 300_000})
    error = refusal(huge)
    assert error.code == "manifest_too_large"

    # A million values: refused before the walk visits them or anything serialises them.
    error = refusal(manifest(builtin_tools=[None] * 1_000_000))
    assert error.code == "manifest_too_large"


def test_a_deeply_nested_manifest_is_refused_without_recursing():
    nested: dict = {"type": "object"}
    for _ in range(40):
        nested = {"type": "object", "properties": {"inner": nested}}
    error = refusal(manifest(**{"tools.0.parameters": nested}))
    assert error.code == "manifest_too_deep"
    assert error.details["field"].startswith("tools[0].parameters.properties.inner")

    # Deeper than Python's recursion limit: refused, not a RecursionError.
    hostile: dict = {}
    for _ in range(100_000):
        hostile = {"x": hostile}
    assert refusal(hostile).code == "manifest_too_deep"


def test_versions_are_parsed_strictly_in_one_place_that_names_the_field():
    def parse_version(text: str) -> tuple[int, ...]:
        if text.startswith("0"):
            raise InvalidInput("invalid_version", f"{text} is not a release")
        return tuple(int(part) for part in text.split("."))

    def parse_spec(text: str) -> str:
        if "x" in text:
            raise InvalidInput("invalid_version_spec", f"{text} is not supported")
        return text

    parsed = check_versions(
        validate_manifest(manifest(min_platform_version="2.0.0")),
        parse_version=parse_version,
        parse_spec=parse_spec,
    )
    assert (parsed.version, parsed.min_platform_version) == ((1, 2, 0), (2, 0, 0))
    assert parsed.sub_agent_specs == ("^2.1.0",)

    valid = validate_manifest(manifest(**{"sub_agents.0.version": "2.x"}))
    with pytest.raises(InvalidInput) as caught:
        check_versions(valid, parse_version=parse_version, parse_spec=parse_spec)
    assert caught.value.code == "invalid_version_spec"
    assert caught.value.details["field"] == "sub_agents[0].version"
    assert caught.value.message == "sub_agents[0].version: 2.x is not supported"
