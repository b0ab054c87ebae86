"""Persona's Feast feature repository: definitions in definitions.py, the default home's
configuration in feature_store.yaml."""
