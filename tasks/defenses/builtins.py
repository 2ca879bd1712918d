"""bdsweep's built-in defenses, in the order ``bdsweep list`` shows them."""

from __future__ import annotations

from tasks.defenses.activation_clustering import ActivationClustering
from tasks.defenses.data_provenance import DataProvenance
from tasks.defenses.fine_pruning import FinePruning
from tasks.defenses.fine_tune import FineTune
from tasks.defenses.i_bau import IBau
from tasks.defenses.neural_cleanse import NeuralCleanse
from tasks.defenses.perfect_filter import PerfectFilter
from tasks.defenses.random_filter import RandomFilter
from tasks.defenses.spectral_signatures import SpectralSignatures
from tasks.defenses.spectre import Spectre
from tasks.defenses.strip import Strip

DEFENSES = (
    ActivationClustering(),
    SpectralSignatures(),
    Spectre(),
    DataProvenance(),
    FinePruning(),
    FineTune(),
    IBau(),
    NeuralCleanse(),
    PerfectFilter(),
    RandomFilter(),
    Strip(),
)
