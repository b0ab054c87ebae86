"""Training of Persona's models (conversion and purchase propensity): labels, retrieval, split,
fit, evaluate, report, save, and batch scoring.

One module per stage; `training.pipeline.train` wires them, `training.tasks` holds what differs
between the tasks and `training.score` scores in batch. Nothing happens at import time.
"""
