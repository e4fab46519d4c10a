"""Package versions: strict SemVer 2.0 values, the specs an installation follows
(`latest`, `==1.2.0`, `^1.2`, `~1.2.3`, `1.2.x`, `>=1.2, <2`), and resolving a spec
against a package's published versions.

Pure: no database. Every spec form becomes intervals of SemVer precedence, so a
pre-release such as 1.0.0-rc.1 compares as SemVer says, not as PEP 440 normalises it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol, TypeVar

from beamclaw.errors import InvalidInput

ACTIVE, YANKED, REVOKED = "active", "yanked", "revoked"

# Caps so that a hostile tenant cannot make parsing or comparing expensive.
MAX_VERSION_LENGTH = 64
MAX_NUMBER_DIGITS = 9  # every numeric part is below 10**9
MAX_SPEC_LENGTH = 200
MAX_SPEC_CLAUSES = 10

_NUMBER = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_IDENTIFIER = re.compile(r"[0-9A-Za-z-]+\Z")
_WILDCARDS = frozenset("xX*")
# Two-character operators first, so `>=` is not read as `>` followed by `=1.0`.
_OPERATORS = ("==", "!=", ">=", "<=", "~=", ">", "<", "^", "~")

VERSION_FORM = "A version is MAJOR.MINOR.PATCH[-pre-release][+build], like 1.2.0 or 2.0.0-rc.1."
SPEC_FORMS = (
    "Use latest, an exact version (1.2.0 or ==1.2.0), ^1.2.3, ~1.2.3, a wildcard "
    "(1.2.x, 1.x, *) or comparisons joined by commas (>=1.2, <2, !=1.3.0, ~=1.4, ==1.2.*)."
)


@dataclass(frozen=True, order=True)
class Version:
    """A SemVer 2.0 version, ordered by precedence. Build one from text with parse_version.

    Build metadata is kept for display but ignored by comparison: 1.0.0+a == 1.0.0+b, so
    they are one version for the rule that a version is never published twice.
    """

    major: int = field(compare=False)
    minor: int = field(compare=False)
    patch: int = field(compare=False)
    prerelease: tuple[str, ...] = field(default=(), compare=False)
    build: tuple[str, ...] = field(default=(), compare=False)
    _key: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # A release (1) sorts above its pre-releases (0). Numeric identifiers, as (0, n),
        # sort below alphanumeric ones, as (1, text); with an equal prefix, more
        # identifiers sort higher, which is tuple order.
        pre = tuple((0, int(p)) if _DIGITS.match(p) else (1, p) for p in self.prerelease)
        key = (self.major, self.minor, self.patch, 0 if pre else 1, pre)
        object.__setattr__(self, "_key", key)

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    @property
    def identity(self) -> str:
        """The canonical text without build metadata: equal for duplicate versions."""
        text = f"{self.major}.{self.minor}.{self.patch}"
        return f"{text}-{'.'.join(self.prerelease)}" if self.prerelease else text

    def __str__(self) -> str:
        return f"{self.identity}+{'.'.join(self.build)}" if self.build else self.identity


def parse_version(text: str) -> Version:
    """The Version `text` spells in strict SemVer 2.0; InvalidInput(invalid_version) if not."""
    try:
        if not isinstance(text, str):
            raise ValueError("it is not text")
        return _parse_version(text)
    except ValueError as problem:
        raise _refusal("invalid_version", "a valid version", text, problem, VERSION_FORM)


def _refusal(code: str, what: str, text: object, problem: ValueError, forms: str) -> InvalidInput:
    # Over-long text is not echoed back: it may be a hostile tenant's megabyte.
    shown = repr(text) if isinstance(text, str) and len(text) <= MAX_SPEC_LENGTH else "It"
    message = f"{shown} is not {what}: {problem}. {forms}"
    return InvalidInput(code, message, details={"field": "version"})


@lru_cache(maxsize=4096)  # resolve() parses stored texts on every turn start
def _parse_version(text: str) -> Version:
    if len(text) > MAX_VERSION_LENGTH:
        raise ValueError(f"it is longer than {MAX_VERSION_LENGTH} characters")
    if not text:
        raise ValueError("it is empty")
    if any(char.isspace() for char in text):
        raise ValueError("it contains whitespace")
    if text == "latest":
        raise ValueError("'latest' is a spec, not a version")
    if text[0] in "vV":
        raise ValueError("it starts with 'v'; write the numbers alone, like 1.2.0")
    rest, plus, build_text = text.partition("+")
    core_text, dash, pre_text = rest.partition("-")
    parts = core_text.split(".")
    if len(parts) != 3:
        raise ValueError(f"SemVer needs three numbers, MAJOR.MINOR.PATCH; it has {len(parts)}")
    numbers = _numbers(parts)
    prerelease = _identifiers(pre_text, "pre-release") if dash else ()
    for identifier in prerelease:
        if _DIGITS.match(identifier):
            _check_number(identifier, "numeric pre-release identifier")
    build = _identifiers(build_text, "build metadata") if plus else ()
    return Version(*numbers, prerelease, build)


def _numbers(parts: list[str]) -> tuple[int, ...]:
    for part in parts:
        _check_number(part, "number")
    return tuple(map(int, parts))


def _check_number(text: str, what: str) -> None:
    if not text:
        raise ValueError(f"a {what} is empty")
    if not _DIGITS.match(text):
        raise ValueError(f"{text!r} is not a number")
    if not _NUMBER.match(text):
        raise ValueError(f"the {what} {text!r} has a leading zero")
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"the {what} {text!r} is too large (the limit is 10**9)")


def _identifiers(text: str, what: str) -> tuple[str, ...]:
    parts = tuple(text.split("."))
    for part in parts:
        if not part:
            raise ValueError(f"the {what} has an empty identifier")
        if not _IDENTIFIER.match(part):
            raise ValueError(f"the {what} {part!r} may hold only ASCII letters, digits and '-'")
    return parts


@dataclass(frozen=True)
class _Clause:
    """One clause: the precedence keys from `low` to `high` it admits, or those outside."""

    text: str  # canonical
    low: tuple | None = None
    high: tuple | None = None
    low_inclusive: bool = True
    high_inclusive: bool = False
    outside: bool = False  # `!=`: admit everything but the interval
    opens: tuple | None = None  # the MAJOR.MINOR.PATCH whose pre-releases it admits
    pin: Version | None = None  # set by `==X.Y.Z` and a bare `X.Y.Z`

    def admits(self, key: tuple) -> bool:
        above = self.low is None or key > self.low or (self.low_inclusive and key == self.low)
        below = self.high is None or key < self.high or (self.high_inclusive and key == self.high)
        return (above and below) != self.outside


@dataclass(frozen=True)
class VersionSpec:
    """What an installation follows. Build one with parse_spec; `str()` is canonical.

    Pre-releases are admitted only of a MAJOR.MINOR.PATCH that a clause names as a
    pre-release (`^1.0.0-rc.1` admits 1.0.0-rc.2, never 1.1.0-beta), as npm does.
    """

    text: str
    clauses: tuple[_Clause, ...] = field(compare=False, repr=False)

    def __str__(self) -> str:
        return self.text

    @property
    def pin(self) -> Version | None:
        """The one version an exact spec (`==1.2.0` or `1.2.0`) names, else None."""
        return self.clauses[0].pin if len(self.clauses) == 1 else None

    @property
    def is_exact(self) -> bool:
        return self.pin is not None

    def admits(self, version: Version) -> bool:
        """Whether `version` satisfies every clause and the pre-release rule."""
        key = version._key
        if version.prerelease and all(clause.opens != key[:3] for clause in self.clauses):
            return False
        return all(clause.admits(key) for clause in self.clauses)


def parse_spec(text: str) -> VersionSpec:
    """The VersionSpec `text` spells; InvalidInput(invalid_version_spec) if none."""
    try:
        if not isinstance(text, str):
            raise ValueError("it is not text")
        if len(text) > MAX_SPEC_LENGTH:
            raise ValueError(f"it is longer than {MAX_SPEC_LENGTH} characters")
        if not text.strip():
            raise ValueError("it is empty")
        if text.strip() == "latest":
            return VersionSpec("latest", ())
        parts = text.split(",")
        if len(parts) > MAX_SPEC_CLAUSES:
            raise ValueError(f"it has more than {MAX_SPEC_CLAUSES} clauses")
        clauses = tuple(_clause(part.strip()) for part in parts)
    except ValueError as problem:
        raise _refusal("invalid_version_spec", "a version spec", text, problem, SPEC_FORMS)
    return VersionSpec(", ".join(clause.text for clause in clauses), clauses)


def _clause(text: str) -> _Clause:
    if not text:
        raise ValueError("a clause is empty")
    if text == "*":
        return _Clause("*")
    if text == "latest":
        raise ValueError("'latest' cannot be combined with other clauses")
    op = next((op for op in _OPERATORS if text.startswith(op)), "")
    operand = text[len(op) :].lstrip()
    if not operand:
        raise ValueError(f"{text!r} names no version")
    if any(char.isspace() for char in operand):
        raise ValueError(f"{text!r} contains whitespace; join clauses with commas")
    if op in ("", "==", "!=") and operand[-1:] in _WILDCARDS:
        numbers = _wildcard_prefix(operand)
        prefix = ".".join(map(str, numbers))
        canonical = f"{op}{prefix}.*" if op else f"{prefix}.x"
        return _Clause(canonical, _padded(numbers)._key, _bump(numbers)._key, outside=op == "!=")
    version, numbers = _operand(operand)
    canonical = f"{op or '=='}{version if len(numbers) == 3 else '.'.join(map(str, numbers))}"
    key = version._key
    opens = key[:3] if version.is_prerelease else None
    if op in ("", "==", "!="):
        if len(numbers) < 3:
            raise ValueError(f"{text!r} is not a full version like 1.2.0; for a range write 1.2.x")
        if op == "!=":  # excluding a pre-release opens no other
            return _Clause(canonical, key, key, high_inclusive=True, outside=True)
        return _Clause(canonical, key, key, high_inclusive=True, opens=opens, pin=version)
    # PEP 440 pads a partial version with zeros: `<=1.2` means <=1.2.0.
    if op in (">=", ">"):
        return _Clause(canonical, low=key, low_inclusive=op == ">=", opens=opens)
    if op in ("<", "<="):
        return _Clause(canonical, high=key, high_inclusive=op == "<=", opens=opens)
    if op == "^":  # the leftmost non-zero number given may not change: ^0.2.3 is <0.3.0
        kept = next((i for i, n in enumerate(numbers) if n), len(numbers) - 1) + 1
    elif op == "~":  # ~1 is <2.0.0; ~1.2 and ~1.2.3 are <1.3.0
        kept = min(len(numbers), 2)
    else:  # `~=`: the last number given may change: ~=1.4 is <2.0.0, ~=1.4.5 is <1.5.0
        if len(numbers) < 2:
            raise ValueError(f"{text!r} needs at least two numbers, like ~=1.4")
        kept = len(numbers) - 1
    return _Clause(canonical, key, _bump(numbers[:kept])._key, opens=opens)


def _operand(text: str) -> tuple[Version, tuple[int, ...]]:
    """`1`, `1.2` (padded with zeros) or a full version, with the numbers it gave."""
    if text.count(".") < 2:
        numbers = _numbers(text.split("."))
        return _padded(numbers), numbers
    try:
        version = _parse_version(text)
    except ValueError as problem:
        raise ValueError(f"in {text!r}, {problem}")
    if version.build:
        raise ValueError(f"{text!r} has build metadata, which a spec cannot select on")
    return version, version._key[:3]


def _wildcard_prefix(text: str) -> tuple[int, ...]:
    """The numbers before the wildcard of `1.x`, `1.2.x`, `1.2.*` or `1.x.x`."""
    parts = text.split(".")
    given = next((i for i, part in enumerate(parts) if part in _WILDCARDS), len(parts))
    if not 1 <= given <= 2 or len(parts) > 3 or not _WILDCARDS.issuperset(parts[given:]):
        raise ValueError(f"{text!r} is not a wildcard like 1.x or 1.2.x")
    return _numbers(parts[:given])


def _padded(numbers: tuple[int, ...]) -> Version:
    return Version(*numbers, *(0,) * (3 - len(numbers)))


def _bump(numbers: tuple[int, ...]) -> Version:
    """The first release above every version starting with `numbers`: (1, 2) -> 1.3.0."""
    return _padded((*numbers[:-1], numbers[-1] + 1))


class Candidate(Protocol):
    """A published version as resolve() sees it, such as a PackageVersion row."""

    version: Version | str
    status: str  # ACTIVE, YANKED or REVOKED


C = TypeVar("C", bound=Candidate)


def resolve(spec: VersionSpec, candidates: Iterable[C]) -> C | None:
    """The highest candidate `spec` admits, or None.

    Revoked versions are never chosen; yanked ones only by an exact pin of that very
    version; a status other than the three known ones is never chosen either. A version
    given as text must be valid SemVer (InvalidInput otherwise): it was checked on publish.
    """
    best, best_key = None, None
    for candidate in candidates:
        status = candidate.status
        if status != ACTIVE and not (status == YANKED and spec.is_exact):
            continue
        version = candidate.version
        if not isinstance(version, Version):
            version = parse_version(version)
        if (best_key is None or version._key > best_key) and spec.admits(version):
            best, best_key = candidate, version._key
    return best
