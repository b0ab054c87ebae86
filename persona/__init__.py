"""Persona: feature-store-centric user profiling and purchase prediction."""
