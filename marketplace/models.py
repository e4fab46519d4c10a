"""Versioned agent packages (see DESIGN.md, "Marketplace"); built in a later issue."""
