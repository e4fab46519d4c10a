"""Package versions: what SemVer text is accepted, how versions order and collide, which
specs parse, and which published version a spec resolves to."""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import pairwise

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version as Pep440Version

from beamclaw.errors import InvalidInput
from marketplace.versions import (
    ACTIVE,
    REVOKED,
    YANKED,
    Version,
    parse_spec,
    parse_version,
    resolve,
)

# --- Parsing versions -------------------------------------------------------------------

VALID_VERSIONS = [
    # text, (major, minor, patch), prerelease, build
    ("0.0.0", (0, 0, 0), (), ()),
    ("1.2.3", (1, 2, 3), (), ()),
    ("10.20.30", (10, 20, 30), (), ()),
    ("1.0.0-alpha", (1, 0, 0), ("alpha",), ()),
    ("1.0.0-alpha.1", (1, 0, 0), ("alpha", "1"), ()),
    ("1.0.0-0.3.7", (1, 0, 0), ("0", "3", "7"), ()),
    ("1.0.0-x.7.z.92", (1, 0, 0), ("x", "7", "z", "92"), ()),
    ("1.0.0-x-y-z.--", (1, 0, 0), ("x-y-z", "--"), ()),
    ("1.0.0-0A", (1, 0, 0), ("0A",), ()),  # alphanumeric: a leading zero is allowed
    ("1.0.0+20130313144700", (1, 0, 0), (), ("20130313144700",)),
    ("1.0.0+0001", (1, 0, 0), (), ("0001",)),  # build metadata may have leading zeros
    ("1.0.0-beta+exp.sha.5114f85", (1, 0, 0), ("beta",), ("exp", "sha", "5114f85")),
    ("1.0.0+21AF26D3----117B344092BD", (1, 0, 0), (), ("21AF26D3----117B344092BD",)),
    ("999999999.999999999.999999999", (999999999, 999999999, 999999999), (), ()),
]


@pytest.mark.parametrize(
    ("text", "core", "prerelease", "build"), VALID_VERSIONS, ids=[v[0] for v in VALID_VERSIONS]
)
def test_a_valid_version_parses_into_its_parts_and_prints_as_written(text, core, prerelease, build):
    version = parse_version(text)

    assert (version.major, version.minor, version.patch) == core
    assert version.prerelease == prerelease
    assert version.build == build
    assert version.is_prerelease == bool(prerelease)
    assert str(version) == text


INVALID_VERSIONS = [
    # text, what the message must say
    ("1.0", "three numbers"),
    ("1", "three numbers"),
    ("1.0.0.0", "three numbers"),
    ("v1.0.0", "starts with 'v'"),
    ("V1.0.0", "starts with 'v'"),
    ("01.0.0", "'01' has a leading zero"),
    ("1.01.0", "'01' has a leading zero"),
    ("1.0.00", "'00' has a leading zero"),
    ("1.0.0-01", "pre-release identifier '01' has a leading zero"),
    ("1.0.0-rc.007", "pre-release identifier '007' has a leading zero"),
    ("1.0.0-", "pre-release has an empty identifier"),
    ("1.0.0-rc..1", "pre-release has an empty identifier"),
    ("1.0.0-rc.", "pre-release has an empty identifier"),
    ("1.0.0+", "build metadata has an empty identifier"),
    ("1.0.0+build..1", "build metadata has an empty identifier"),
    ("1..0", "number is empty"),
    ("-1.0.0", "three numbers"),
    ("a.b.c", "'a' is not a number"),
    ("\u0661.0.0", "is not a number"),  # an Arabic-Indic digit one: ASCII digits only
    ("1.0.0-rc_1", "only ASCII letters, digits and '-'"),
    ("1.0.0-ré", "only ASCII letters, digits and '-'"),
    ("1.0.0+a+b", "only ASCII letters, digits and '-'"),
    ("latest", "'latest' is a spec"),
    ("", "empty"),
    (" 1.0.0", "whitespace"),
    ("1.0.0 ", "whitespace"),
    ("1.0.0\n", "whitespace"),
    ("1.0 .0", "whitespace"),
    ("1000000000.0.0", "too large"),
    ("1.0.0-1000000000", "too large"),
    ("1.0.0-" + "a" * 60, "longer than 64 characters"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID_VERSIONS, ids=[v[0] for v in INVALID_VERSIONS])
def test_an_invalid_version_is_refused_with_the_reason(text, reason):
    with pytest.raises(InvalidInput) as refused:
        parse_version(text)

    assert refused.value.code == "invalid_version"
    assert refused.value.details == {"field": "version"}
    assert reason in refused.value.message
    assert "MAJOR.MINOR.PATCH" in refused.value.message


@pytest.mark.parametrize("value", [None, 1, 1.0, b"1.0.0"])
def test_a_version_that_is_not_text_is_refused(value):
    with pytest.raises(InvalidInput) as refused:
        parse_version(value)

    assert refused.value.code == "invalid_version"
    assert "not text" in refused.value.message


def test_an_over_long_version_is_not_echoed_back():
    with pytest.raises(InvalidInput) as refused:
        parse_version("1" * 10_000)

    assert "1111" not in refused.value.message


# --- Ordering and identity --------------------------------------------------------------

# SemVer 2.0 §11's example chain, then numeric-vs-text and numeric-vs-lexical edges.
ASCENDING = [
    "0.9.9",
    "1.0.0-0",
    "1.0.0-2",
    "1.0.0-10",  # numeric identifiers compare as numbers
    "1.0.0-Z",  # ... and below alphanumeric ones; alphanumerics compare in ASCII order
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.9",
    "1.0.0-alpha.10",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",  # a release ranks above its pre-releases
    "1.0.1",
    "1.9.0",
    "1.10.0",  # not lexical: 10 > 9
    "1.11.0",
    "2.0.0-rc.1",
    "2.0.0",
    "2.1.0",
    "2.1.1",
    "10.0.0",
]


@pytest.mark.parametrize(
    ("lower", "higher"),
    list(pairwise(ASCENDING)),
    ids=[f"{a}<{b}" for a, b in pairwise(ASCENDING)],
)
def test_versions_order_by_semver_precedence(lower, higher):
    low, high = parse_version(lower), parse_version(higher)

    assert low < high
    assert high > low
    assert low != high
    assert max(low, high) is high


def test_sorting_shuffled_versions_gives_semver_order():
    versions = [parse_version(text) for text in ASCENDING]
    random.Random(7).shuffle(versions)

    assert [str(v) for v in sorted(versions)] == ASCENDING


SAME_OR_NOT = [
    # a, b, duplicates?
    ("1.0.0+a", "1.0.0+b", True),
    ("1.0.0", "1.0.0+build.5", True),
    ("1.0.0-rc.1+x", "1.0.0-rc.1", True),
    ("1.0.0", "1.0.0-rc.1", False),
    ("1.0.0-rc.1", "1.0.0-RC.1", False),  # identifiers are case-sensitive
    ("1.0.0-alpha", "1.0.0-alpha.0", False),
    ("1.0.0", "1.0.1", False),
    ("1.10.0", "1.1.0", False),
]


@pytest.mark.parametrize(
    ("a", "b", "duplicates"), SAME_OR_NOT, ids=[f"{a} {b}" for a, b, _ in SAME_OR_NOT]
)
def test_versions_differing_only_in_build_metadata_are_duplicates(a, b, duplicates):
    first, second = parse_version(a), parse_version(b)

    assert (first.identity == second.identity) is duplicates
    assert (first == second) is duplicates
    assert (len({first, second}) == 1) is duplicates
    if duplicates:
        assert not first < second and not second < first


def test_identity_is_the_version_without_build_metadata():
    assert parse_version("1.2.3-rc.1+sha.abc").identity == "1.2.3-rc.1"
    assert parse_version("1.2.3+sha.abc").identity == "1.2.3"


def test_a_version_cannot_be_changed():
    version = parse_version("1.2.3")

    with pytest.raises(AttributeError):
        version.major = 2  # type: ignore[misc]


# --- Parsing specs ----------------------------------------------------------------------

CANONICAL_SPECS = [
    # text, canonical text, exact?
    ("latest", "latest", False),
    ("  latest ", "latest", False),
    ("==1.2.0", "==1.2.0", True),
    ("1.2.0", "==1.2.0", True),
    ("== 1.2.0", "==1.2.0", True),
    ("==2.0.0-beta.2", "==2.0.0-beta.2", True),
    ("^1.2", "^1.2", False),
    ("~1.2.3", "~1.2.3", False),
    ("1.2.*", "1.2.x", False),
    ("1.2.X", "1.2.x", False),
    ("1.x.x", "1.x", False),
    ("*", "*", False),
    ("==1.2.*", "==1.2.*", False),
    (">=1.2,<2", ">=1.2, <2", False),
    (" >=1.0.0 ,  !=1.3.0,<2.0.0 ", ">=1.0.0, !=1.3.0, <2.0.0", False),
    ("~=1.4", "~=1.4", False),
    ("1.2.0, >=1.0", "==1.2.0, >=1.0", False),  # an exact pin alone is exact
    (">=1.2.0, <=1.2.0", ">=1.2.0, <=1.2.0", False),
]


@pytest.mark.parametrize(
    ("text", "canonical", "exact"), CANONICAL_SPECS, ids=[s[0] for s in CANONICAL_SPECS]
)
def test_a_spec_prints_canonically_and_knows_whether_it_is_exact(text, canonical, exact):
    spec = parse_spec(text)

    assert str(spec) == canonical
    assert spec.is_exact is exact
    assert parse_spec(canonical) == spec


INVALID_SPECS = [
    # text, what the message must say
    ("", "empty"),
    ("   ", "empty"),
    ("LATEST", "'LATEST' is not a number"),
    ("latest, <2", "'latest' cannot be combined"),
    ("1.2", "not a full version"),  # bare partials are ambiguous: 1.2.0 or 1.2.x?
    ("==1.2", "not a full version"),
    ("!=1.3", "not a full version"),
    ("^", "names no version"),
    ("~", "names no version"),
    (">=", "names no version"),
    ("~=1", "at least two numbers"),
    ("^1.x", "'x' is not a number"),
    ("1.x.3", "'x' is not a number"),
    ("1.2.3.x", "not a wildcard"),
    ("x", "not a wildcard"),
    (">=v1.0", "'v1' is not a number"),
    ("^01.2", "'01' has a leading zero"),
    ("^1.2.3-01", "'01' has a leading zero"),
    (">=1.0.0+build.1", "build metadata"),
    ("=1.0.0", "'=1' is not a number"),
    ("===1.0.0", "'=1' is not a number"),
    ("=>1.0.0", "'=>1' is not a number"),
    (">=1.0 <2", "whitespace"),  # npm's space-separated ranges: write a comma
    ("1.0.0 || 2.0.0", "whitespace"),
    (">=1.0,,<2", "a clause is empty"),
    (">=1.0,", "a clause is empty"),
    ("^1000000000", "too large"),
    (">=1," * 10 + "<2", "more than 10 clauses"),
    ("^1.0.0-" + "a" * 200, "longer than 200 characters"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID_SPECS, ids=[s[0][:40] for s in INVALID_SPECS])
def test_an_invalid_spec_is_refused_with_the_reason_and_the_forms_accepted(text, reason):
    with pytest.raises(InvalidInput) as refused:
        parse_spec(text)

    assert refused.value.code == "invalid_version_spec"
    assert refused.value.details == {"field": "version"}
    assert reason in refused.value.message
    assert "^1.2.3, ~1.2.3" in refused.value.message


def test_a_spec_that_is_not_text_is_refused():
    with pytest.raises(InvalidInput) as refused:
        parse_spec(None)

    assert refused.value.code == "invalid_version_spec"


# --- What each form admits --------------------------------------------------------------

ADMITS = [
    # spec, versions it admits, versions it refuses (the edges of its translation)
    ("^1.2.3", ["1.2.3", "1.9.9", "1.10.0"], ["1.2.2", "2.0.0", "2.0.0-rc.1"]),
    ("^1.2", ["1.2.0", "1.99.0"], ["1.1.9", "2.0.0"]),
    ("^1", ["1.0.0", "1.9.9"], ["0.9.9", "2.0.0"]),
    ("^0.2.3", ["0.2.3", "0.2.99"], ["0.2.2", "0.3.0"]),
    ("^0.2", ["0.2.0", "0.2.9"], ["0.1.9", "0.3.0"]),
    ("^0", ["0.0.0", "0.99.0"], ["1.0.0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.2", "0.0.4"]),
    ("^0.0", ["0.0.0", "0.0.9"], ["0.1.0"]),
    ("~1.2.3", ["1.2.3", "1.2.99"], ["1.2.2", "1.3.0"]),
    ("~1.2", ["1.2.0", "1.2.9"], ["1.1.9", "1.3.0"]),
    ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
    ("~0.2.3", ["0.2.3", "0.2.4"], ["0.3.0"]),
    ("1.2.x", ["1.2.0", "1.2.9"], ["1.1.9", "1.3.0"]),
    ("1.x", ["1.0.0", "1.99.9"], ["0.9.0", "2.0.0"]),
    ("*", ["0.0.0", "99.0.0"], ["1.0.0-rc.1"]),
    ("==1.2.*", ["1.2.0", "1.2.9"], ["1.3.0"]),
    ("!=1.2.*", ["1.1.9", "1.3.0"], ["1.2.0", "1.2.9"]),
    ("~=1.4", ["1.4.0", "1.9.0"], ["1.3.9", "2.0.0"]),
    ("~=1.4.5", ["1.4.5", "1.4.9"], ["1.4.4", "1.5.0"]),
    (">1.2", ["1.2.1"], ["1.2.0"]),  # PEP 440 pads: >1.2 is >1.2.0
    ("<=1.2", ["1.2.0"], ["1.2.1"]),
    ("==1.2.0", ["1.2.0", "1.2.0+build.9"], ["1.2.1", "1.2.0-rc.1"]),
    ("!=1.2.0", ["1.2.1"], ["1.2.0", "1.2.0+build.9", "1.2.0-rc.1"]),
    # A named pre-release opens pre-releases of that MAJOR.MINOR.PATCH only.
    ("^1.0.0-rc.1", ["1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "1.5.0"], ["1.0.0-beta", "1.1.0-rc.1"]),
    (">=1.0.0-0, <1.0.0", ["1.0.0-0", "1.0.0-alpha"], ["1.0.0", "0.9.0-rc.1"]),
    ("<2.0.0-rc.1", ["2.0.0-beta", "1.9.0"], ["2.0.0-rc.1", "1.9.0-rc.1"]),
    ("!=1.0.0-rc.1", ["1.0.0"], ["1.0.0-rc.2"]),  # excluding one opens no pre-release
]


@pytest.mark.parametrize(("spec", "admitted", "refused"), ADMITS, ids=[a[0] for a in ADMITS])
def test_each_spec_form_admits_exactly_its_range(spec, admitted, refused):
    parsed = parse_spec(spec)

    assert [v for v in admitted if not parsed.admits(parse_version(v))] == []
    assert [v for v in refused if parsed.admits(parse_version(v))] == []


def _random_pep440_spec(rng: random.Random) -> str:
    clauses = []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice([">=", ">", "<", "<=", "!=", "==", "~="])
        count = {"==": 3, "!=": 3, "~=": rng.randint(2, 3)}.get(op, rng.randint(1, 3))
        wildcard = op in ("==", "!=") and rng.random() < 0.3
        numbers = ".".join(
            str(rng.randint(0, 3)) for _ in range(rng.randint(1, 2) if wildcard else count)
        )
        clauses.append(f"{op}{numbers}{'.*' if wildcard else ''}")
    return ", ".join(clauses)


def test_pep440_clauses_admit_the_same_releases_as_packaging():
    # On release versions SemVer and PEP 440 order alike, so a PEP 440 clause must mean
    # here what it means to pip (padding `>1.2` to >1.2.0, `~=`, `==1.2.*`).
    rng = random.Random(2)
    releases = [f"{a}.{b}.{c}" for a in range(4) for b in range(4) for c in range(4)]
    disagreements = []
    for _ in range(400):
        spec = _random_pep440_spec(rng)
        ours, pips = parse_spec(spec), SpecifierSet(spec)
        disagreements += [
            (spec, v)
            for v in releases
            if ours.admits(parse_version(v)) != (Pep440Version(v) in pips)
        ]

    assert disagreements == []


# --- Resolution -------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    version: Version | str
    status: str = ACTIVE


CATALOGUE = [
    Published("0.0.1"),
    Published("0.0.3"),
    Published("0.0.4", YANKED),
    Published("0.1.0"),
    Published("0.2.0"),
    Published("0.2.3"),
    Published("0.2.9"),
    Published("0.3.0"),
    Published("1.0.0-alpha"),
    Published("1.0.0-rc.1"),
    Published("1.0.0"),
    Published("1.0.1"),
    Published("1.1.0"),
    Published("1.2.0"),
    Published("1.2.3"),
    Published("1.2.4", YANKED),
    Published("1.2.5", REVOKED),
    Published("1.3.0", YANKED),
    Published("1.3.1"),
    Published("1.4.0"),
    Published("1.4.5"),
    Published("1.4.6-beta.1"),
    Published("1.9.0"),
    Published("1.9.1", REVOKED),
    Published("2.0.0-beta.2"),
    Published("2.0.0-rc.1", YANKED),
    Published("2.0.0-rc.2", REVOKED),
    Published("2.0.0"),
    Published("2.0.1+build.7"),
    Published("2.1.0-alpha.1"),
    Published("3.0.0-alpha.1"),
]

RESOLUTIONS = [
    # spec, the version it resolves to (None: nothing), why
    ("latest", "2.0.1+build.7", "highest release; pre-releases above it are skipped"),
    ("*", "2.0.1+build.7", "the same as latest"),
    ("==1.2.0", "1.2.0", "exact pin"),
    ("1.2.0", "1.2.0", "a bare version is an exact pin"),
    ("==2.0.1", "2.0.1+build.7", "build metadata plays no part"),
    ("==1.2.4", "1.2.4", "a yanked version pinned exactly"),
    ("1.2.4", "1.2.4", "a yanked version pinned by a bare version"),
    ("==1.3.0", "1.3.0", "a yanked version pinned exactly"),
    ("==2.0.0-rc.1", "2.0.0-rc.1", "a yanked pre-release pinned exactly"),
    ("==1.2.5", None, "revoked, even pinned"),
    ("==1.9.1", None, "revoked, even pinned"),
    ("==2.0.0-rc.2", None, "a revoked pre-release, even pinned"),
    ("==4.0.0", None, "never published"),
    ("==1.0.0-rc.1", "1.0.0-rc.1", "a pre-release pinned exactly"),
    ("1.0.0-alpha", "1.0.0-alpha", "a pre-release pinned by a bare version"),
    ("^1.2", "1.9.0", "caret: 1.9.1 is revoked"),
    ("^1.2.3", "1.9.0", "caret"),
    ("^1", "1.9.0", "caret"),
    ("^1.9.1", None, "caret: its only version is revoked"),
    ("^2", "2.0.1+build.7", "caret: 2.1.0-alpha.1 is a pre-release"),
    ("^3", None, "caret: only a pre-release exists"),
    ("^0.2.3", "0.2.9", "caret on 0.x stays within the minor"),
    ("^0.2", "0.2.9", "caret on 0.x stays within the minor"),
    ("^0", "0.3.0", "caret on 0 stays below 1.0.0"),
    ("^0.0.3", "0.0.3", "caret on 0.0.x stays on the patch"),
    ("^0.0.1", "0.0.1", "caret on 0.0.x stays on the patch"),
    ("^0.0", "0.0.3", "caret on 0.0 stays below 0.1.0; 0.0.4 is yanked"),
    ("~1.2.3", "1.2.3", "tilde: 1.2.4 yanked, 1.2.5 revoked"),
    ("~1.2", "1.2.3", "tilde"),
    ("~1.3.0", "1.3.1", "tilde"),
    ("~1", "1.9.0", "tilde on a major"),
    ("~1.4.5", "1.4.5", "tilde: 1.4.6-beta.1 is a pre-release"),
    ("~0.2.3", "0.2.9", "tilde on 0.x"),
    ("1.2.x", "1.2.3", "wildcard"),
    ("1.3.*", "1.3.1", "wildcard"),
    ("1.x", "1.9.0", "wildcard"),
    ("0.x", "0.3.0", "wildcard: 1.0.0-alpha is a pre-release"),
    ("==1.4.*", "1.4.5", "PEP 440 prefix match"),
    (">=1.2,<2", "1.9.0", "PEP 440 range"),
    (">=1.0.0, !=1.9.0, <2.0.0", "1.4.5", "PEP 440 range with an exclusion"),
    ("^1, !=1.9.*", "1.4.5", "caret with a prefix exclusion"),
    ("~=1.4", "1.9.0", "compatible release of two numbers"),
    ("~=1.4.5", "1.4.5", "compatible release of three numbers"),
    ("<2", "1.9.0", "2.0.0's pre-releases are not named"),
    ("<=1.2", "1.2.0", "PEP 440 pads <=1.2 to <=1.2.0"),
    (">1.2, <1.3", "1.2.3", "PEP 440 pads >1.2 to >1.2.0"),
    ("<0.0.3", "0.0.1", "upper bound"),
    ("<1.0.0", "0.3.0", "1.0.0's pre-releases are not named"),
    ("!=2.0.1", "2.0.0", "an exclusion ignores build metadata"),
    (">2.0.1", None, "only pre-releases lie above"),
    (">=5", None, "nothing so high"),
    (">=1.3.0, <1.3.1", None, "a yanked version is not resolved by a range"),
    ("1.2.4, >=1.0", None, "an exact pin with another clause is a range: no yanked"),
    ("^1.0.0-rc.1", "1.9.0", "a named pre-release still prefers releases in range"),
    ("<1.0.0-rc.1", "1.0.0-alpha", "pre-releases of the named 1.0.0 only"),
    (">=1.0.0-alpha, <1.0.0", "1.0.0-rc.1", "pre-releases of the named 1.0.0"),
    ("~1.4.6-beta.0", "1.4.6-beta.1", "tilde on a pre-release"),
    ("^3.0.0-alpha.0", "3.0.0-alpha.1", "caret on a pre-release"),
    ("^2.0.0-beta.1", "2.0.1+build.7", "2.1.0-alpha.1 is not a pre-release of 2.0.0"),
    (">=2.0.0-beta.1, <2.0.0", "2.0.0-beta.2", "rc.1 yanked, rc.2 revoked"),
]


@pytest.mark.parametrize(("spec", "expected", "why"), RESOLUTIONS, ids=[r[0] for r in RESOLUTIONS])
def test_a_spec_resolves_to_the_highest_eligible_version(spec, expected, why):
    chosen = resolve(parse_spec(spec), CATALOGUE)

    assert (chosen.version if chosen else None) == expected, why


def test_resolution_does_not_depend_on_the_order_of_the_catalogue():
    shuffled = list(CATALOGUE)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert [resolve(parse_spec(spec), shuffled) for spec, _, _ in RESOLUTIONS] == [
            resolve(parse_spec(spec), CATALOGUE) for spec, _, _ in RESOLUTIONS
        ]


def test_resolve_returns_the_candidate_given_and_accepts_parsed_versions():
    candidates = [Published(parse_version("1.0.0")), Published(parse_version("1.1.0"))]

    assert resolve(parse_spec("^1"), candidates) is candidates[1]


def test_resolve_over_no_candidates_is_none():
    assert resolve(parse_spec("latest"), []) is None


def test_a_candidate_of_unknown_status_is_never_chosen():
    candidates = [Published("1.0.0"), Published("1.1.0", "pending")]

    assert resolve(parse_spec("^1"), candidates).version == "1.0.0"
    assert resolve(parse_spec("==1.1.0"), candidates) is None


def test_a_corrupt_stored_version_is_refused_not_skipped():
    with pytest.raises(InvalidInput):
        resolve(parse_spec("latest"), [Published("1.0")])


def test_a_thousand_versions_resolve_to_the_highest_eligible_one():
    candidates = [Published(f"{n // 100}.{n % 100}.0") for n in range(1_000)]
    candidates[-1] = Published("9.99.0", REVOKED)

    assert resolve(parse_spec(">=1.0, <10, !=9.98.0"), candidates).version == "9.97.0"
