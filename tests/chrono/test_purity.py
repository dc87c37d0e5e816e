"""Purity matrices and summaries on hand-made activations (DESIGN.md §4.4)."""


import pytest
import torch

from chrono_membench.chrono.purity import (
    column_sums, mean_activation_matrix, purity_matrix, purity_summary, share_normalised,
)




def test_purity_hand_made():
    # latent 0 fires only on bucket 1; latent 1 fires evenly everywhere; latent 2 never fires.
    acts = torch.tensor([[0.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    column = torch.tensor([0, 1, 2, 0])
    sums, counts = column_sums(acts, column, 3)
    M = mean_activation_matrix(sums, counts)
    assert M.shape == (3, 3)
    P = purity_matrix(M)
    assert P[0].tolist() == [0.0, 1.0, 0.0]
    assert P[1].tolist() == pytest.approx([1 / 3] * 3)
    assert P[2].tolist() == [0.0, 0.0, 0.0]
    only_uniform = purity_summary(P[1:2])
    assert only_uniform["mean_normalised"] == pytest.approx(0.0, abs=1e-6) and only_uniform["frac_gt50"] == 0.0
    both = purity_summary(P)  # dead latent 2 is left out
    assert both["mean_normalised"] == pytest.approx(0.5) and both["frac_gt50"] == 0.5
    # Chunked sums add up to the one-shot matrix.
    s1, c1 = column_sums(acts[:2], column[:2], 3)
    s2, c2 = column_sums(acts[2:], column[2:], 3)
    torch.testing.assert_close(mean_activation_matrix(s1 + s2, c1 + c2), M)
    # Share normalisation: equal activation on a 90 % and a 10 % source favours the rare one.
    assert share_normalised(torch.tensor([[1.0, 1.0]]), torch.tensor([0.9, 0.1]))[0].tolist() == pytest.approx([0.1, 0.9])

