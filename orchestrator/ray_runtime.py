"""Ray start-up for the driver: a local instance bound to 127.0.0.1, or the cluster at an address."""

from __future__ import annotations

import logging
import os

# Ray would otherwise report usage to its servers; bdsweep sends no traffic off the machine.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tune's newer console output prints its own tables whatever the verbosity; bdsweep prints progress itself.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def keep_local_ray_on_loopback() -> None:
    """Make a local Ray instance listen on 127.0.0.1 only.

    Ray replaces a node address of 127.0.0.1 with the machine's reachable IP and binds its servers
    there, unless clusters are switched off with this variable (its name says Windows/OSX; it is
    read on every platform). Must be set before ``ray`` is imported; not for ``--address`` runs,
    where other nodes must reach this driver.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def start_ray(address: str | None = None) -> None:
    """Connect to the cluster at ``address``, or start a local Ray bound to 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **quiet)
    else:
        # "local": a new instance of our own; without it Ray joins the last cluster `ray start` made on
        # this machine (/tmp/ray/ray_current_cluster), even one that is gone.
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    # Tune's loggers are off (see sweep._scale_tune_to), so its results table finds no result.json
    # and warns once per trial at the end of every sweep; the rows are ours, in the storage root.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
