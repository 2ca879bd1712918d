import numpy as np

from tasks.datasets.splits import split_stratified


def test_stratified_split_holds_out_the_fraction_of_each_class():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    kept, held = split_stratified(y, 0.1, seed=3)
    assert np.bincount(y[held]).tolist() == [5, 3, 2]
    assert len(np.intersect1d(kept, held)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(y)))
