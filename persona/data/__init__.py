"""Offline data: reading raw shop files, point-in-time snapshots, the GE gate calls, published
offline versions and the home's lock. Imports `persona.core` and `expectations`; no Feast, no
serving."""
