"""The jobs: ingest, materialize, segments and the demo, with their progress display. The only
modules that wire stages together; they may import every layer below, and nothing imports them
but `persona.cli`."""
