"""Training of Persona's conversion model: labels, retrieval, split, fit, evaluate, report, save.

One module per stage; `training.pipeline.train` wires them. Nothing happens at import time.
"""
