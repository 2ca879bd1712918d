"""Process-level TensorFlow settings that must be fixed before TensorFlow runs its first op."""

from __future__ import annotations

import math
import os

# Keras 3 picks its backend at import time; bdsweep is written for TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cpu_budget() -> int:
    """Threads this process may use: the trial's CPUs once :func:`configure_tensorflow` ran, else all cores."""
    return int(os.environ.get("TF_NUM_INTRAOP_THREADS", os.cpu_count() or 1))


def configure_tensorflow(cpus: float = 1, gpu_memory_limit_mb: int | None = None) -> None:
    """Limit TensorFlow to ``cpus`` threads and make it share GPUs politely.

    Ray reserves CPUs for a trial but does not stop TensorFlow from starting one thread per core,
    so two trials on a 2-core node would each use both cores. Call this at the start of a trial,
    before any TensorFlow op; once TensorFlow's context exists the thread pools cannot change and
    the call only re-exports the environment variables for child processes.

    Parameters
    ----------
    cpus : float
        CPUs reserved for the trial; fractional values round up to at least one thread.
    gpu_memory_limit_mb : int or None
        With a fractional GPU, the memory (MiB) this process may take on each visible GPU.
        None turns on memory growth instead, so a process takes only what it uses.
    """
    threads = max(1, math.ceil(cpus))
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"

    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        # The context already exists (a second trial in a reused process): the pools are fixed.
        return
    for gpu in tf.config.list_physical_devices("GPU"):
        if gpu_memory_limit_mb is None:
            tf.config.experimental.set_memory_growth(gpu, True)
        else:
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=gpu_memory_limit_mb)]
            )
