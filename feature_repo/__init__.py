"""Persona's Feast feature repository: definitions in definitions.py, config in feature_store.yaml."""
