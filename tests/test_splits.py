"""Data splits: search train/val carved from the training data, the test split never touched."""

import numpy as np
import torch

from osnas.dataflows.digits import Digits


def test_digits_splits_are_disjoint_and_seeded():
    flow = Digits(Digits.Options(input_size=16), seed=0, device=torch.device("cpu"))
    train, val, test = set(flow.search_train_idx), set(flow.search_val_idx), set(flow.test_idx)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val == set(flow.train_idx)
    assert len(train | val | test) == 1797
    other = Digits(Digits.Options(input_size=16), seed=1, device=torch.device("cpu"))
    # the test split depends on split_seed only; the search split on the run seed
    np.testing.assert_array_equal(flow.test_idx, other.test_idx)
    assert set(other.search_val_idx) != val
    again = Digits(Digits.Options(input_size=16), seed=0, device=torch.device("cpu"))
    np.testing.assert_array_equal(flow.search_val_idx, again.search_val_idx)


def test_loaders_cover_their_split_once():
    flow = Digits(Digits.Options(input_size=16, batch_size=50), seed=0, device=torch.device("cpu"))
    _, test = flow.final_split()
    labels = torch.cat([y for _, y in test])
    assert labels.shape[0] == len(flow.test_idx)
    train, _ = flow.search_split()
    batches = list(train)
    assert len(batches) == len(train) == len(flow.search_train_idx) // 50
    assert batches[0][0].shape == (50, 1, 16, 16)
