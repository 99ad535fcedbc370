"""Helpers shared by several targets. No target owns this package; targets import it,
never each other."""
