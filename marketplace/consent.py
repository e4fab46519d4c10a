"""What a move from one package version to another would change, and whether it widens
what the tenant consented to (permissions or price): such a move waits for consent."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VersionDiff:
    from_version: str
    to_version: str
    prompt_changed: bool
    model_changed: bool
    tools_added: list[str] = field(default_factory=list)
    tools_removed: list[str] = field(default_factory=list)
    # Only what grows: new list items, a flag turned on, a limit raised.
    permissions_added: dict = field(default_factory=dict)
    price_from: dict = field(default_factory=dict)
    price_to: dict = field(default_factory=dict)
    price_raised: bool = False

    @property
    def widens(self) -> bool:
        return bool(self.permissions_added) or self.price_raised

    def as_dict(self) -> dict:
        return {
            "from_version": self.from_version,
            "to_version": self.to_version,
            "prompt_changed": self.prompt_changed,
            "model_changed": self.model_changed,
            "tools_added": self.tools_added,
            "tools_removed": self.tools_removed,
            "permissions_added": self.permissions_added,
            "price": {"from": self.price_from, "to": self.price_to, "raised": self.price_raised},
            "needs_consent": self.widens,
        }


def tool_names(manifest: dict) -> set[str]:
    return {t["name"] for t in manifest.get("tools", [])} | set(manifest.get("builtin_tools", []))


def permissions_added(granted: dict, wanted: dict) -> dict:
    """The part of `wanted` that `granted` does not cover."""
    added: dict = {}
    for name, value in wanted.items():
        had = granted.get(name)
        if isinstance(value, list):
            new = sorted(set(value) - set(had or []))
            if new:
                added[name] = new
        elif isinstance(value, bool):
            if value and not had:
                added[name] = True
        elif isinstance(value, int | float):
            if had is None or value > had:
                added[name] = value
        elif value != had:
            added[name] = value
    return added


def _amounts(pricing: dict) -> dict[str, int]:
    return {k: v for k, v in pricing.items() if k.endswith("_micros") and isinstance(v, int)}


def price_raised(old: dict, new: dict) -> bool:
    """Whether any amount the tenant pays per unit grows (a new kind of charge counts)."""
    if new.get("model", "free") == "free":
        return False
    if old.get("model", "free") != new.get("model"):
        return True
    before = _amounts(old)
    return any(amount > before.get(name, 0) for name, amount in _amounts(new).items())


def diff(old_version: str, old: dict, new_version: str, new: dict, granted: dict) -> VersionDiff:
    """`old`/`new` are manifests; `granted` the permissions the installation holds."""
    old_tools, new_tools = tool_names(old), tool_names(new)
    return VersionDiff(
        from_version=old_version,
        to_version=new_version,
        prompt_changed=old.get("system_prompt") != new.get("system_prompt"),
        model_changed=old.get("model") != new.get("model"),
        tools_added=sorted(new_tools - old_tools),
        tools_removed=sorted(old_tools - new_tools),
        permissions_added=permissions_added(granted, new.get("permissions", {})),
        price_from=old.get("pricing", {}),
        price_to=new.get("pricing", {}),
        price_raised=price_raised(old.get("pricing", {}), new.get("pricing", {})),
    )
