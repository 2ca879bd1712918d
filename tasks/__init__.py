"""The stages of a bdsweep trial: data, triggers, poisoning, models, training, defenses, evaluation.

Every stage is a plain function ``stage(config, *parents) -> artifact``. Nothing here knows about
Ray, the artifact store or where files live; the orchestrator wires stages together.
"""
