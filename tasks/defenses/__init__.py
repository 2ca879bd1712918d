"""Defenses, each a :mod:`tasks.methods` kind: training-set filters (``ac``, ``ss``, ``dp`` and the
``perfect_filter`` and ``random_filter`` controls), model repairs (``fp``, ``fine_tune``).

The built-ins are listed in :mod:`tasks.defenses.builtins` and registered by :mod:`tasks.registry`
beside any plugin's. This package's ``__init__`` imports nothing, so that a generic stage module
(:mod:`tasks.defenses.kinds`) can be imported without the methods.
"""
