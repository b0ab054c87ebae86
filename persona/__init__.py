"""Persona: feature-store-centric user profiling and purchase prediction.

Layers, top to bottom; a module imports only from layers below it (README, Architecture):
`persona.cli` -> `persona.jobs` -> `training`, `serving` -> `persona.profiling`,
`persona.featurestore` -> `feature_repo`, `persona.data` -> `expectations` -> `persona.core`.
`persona.synthetic_shop` (generated shops for demos, tests and benchmarks) needs only
`persona.core`.
"""
