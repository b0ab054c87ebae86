"""Profile rules: the safe expression language, tags and segments over feature frames.
Imports `persona.core` only: no store, no model."""
