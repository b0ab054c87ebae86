"""The only place that knows Feast's internals: the one store configuration, registry staging,
the ASOF offline store and Feast's Redis layout. Imports `persona.core`, `persona.data` and
`feature_repo`."""
