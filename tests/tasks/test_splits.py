import numpy as np

from tasks.datasets.splits import split_stratified


def test_stratified_split_holds_out_the_fraction_of_each_class():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    kept, held = split_stratified(y, 0.1, seed=3)
    assert np.bincount(y[held]).tolist() == [5, 3, 2]
    assert len(np.intersect1d(kept, held)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(y)))


def test_split_by_fractions_partitions_every_class():
    from tasks.datasets.splits import split_by_fractions

    y = np.repeat([0, 1], [100, 40])
    train, tune, test = split_by_fractions(y, (0.75, 0.05, 0.20), seed=0)
    assert np.bincount(y[train]).tolist() == [75, 30]
    assert np.bincount(y[tune]).tolist() == [5, 2]
    assert np.bincount(y[test]).tolist() == [20, 8]
    np.testing.assert_array_equal(np.sort(np.concatenate([train, tune, test])), np.arange(len(y)))
