"""bdsweep's orchestrator: search spaces, the artifact store, the Ray Tune driver, results and the CLI.

It imports :mod:`tasks` and calls stages as plain functions; it never reaches into Keras.
"""
