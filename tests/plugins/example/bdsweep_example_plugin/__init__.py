"""An example bdsweep plugin: ``corner_checker`` (an attack) and ``corner_filter`` (a training-set filter)."""
