"""Memorisation latents: the within-bucket AUROC per latent and the permutation null of its maximum."""

import numpy as np
import torch

from chrono_membench.chrono.latent_auc import memorisation_latents, within_bucket_auroc
from chrono_membench.chrono.stats import auroc
from chrono_membench.probe_eval import top_decile_within


def test_within_bucket_auroc_is_the_pooled_mann_whitney_and_ignores_what_only_tracks_the_bucket():
    rng = np.random.default_rng(0)
    bucket = np.repeat([0, 1], 40)
    memorised = np.zeros(80, dtype=bool)
    memorised[:4], memorised[40:60] = True, True  # bucket 1 is far more memorised than bucket 0
    x = np.stack([memorised * 2.0 + rng.normal(0, 0.1, 80),  # fires on memorised windows: AUROC 1
                  bucket * 1.0,  # tracks the bucket only: 0.5 within buckets (a pooled AUROC would say ≈ 0.8)
                  np.where(rng.random(80) < 0.2, rng.random(80), 0.0)], axis=1)  # sparse noise, many ties at 0
    auc, _ = within_bucket_auroc(x, memorised, bucket)
    assert auc[0] == 1.0 and auc[1] == 0.5
    pooled = [auroc(x[bucket == b, 2][memorised[bucket == b]], x[bucket == b, 2][~memorised[bucket == b]]) *
              memorised[bucket == b].sum() * (~memorised[bucket == b]).sum() for b in (0, 1)]
    assert np.isclose(auc[2], sum(pooled) / (4 * 36 + 20 * 20))  # the reference AUROC, ties half, pooled by pairs


def test_the_best_of_many_random_latents_is_read_against_its_null():
    rng = np.random.default_rng(1)
    bucket = np.repeat([0, 1, 2], 30)
    memorised = top_decile_within(rng.normal(size=90), bucket)
    assert memorised.sum() == 9 and all(memorised[bucket == b].sum() == 3 for b in range(3))
    noise = torch.as_tensor(rng.random((90, 500)))
    got = memorisation_latents(noise, memorised, bucket, permutations=200)
    assert got["auc_max"] > 0.75  # the maximum of 500 chance AUROCs is high...
    assert abs(got["auc_max"] - got["auc_max_null"]) < 0.1 and got["auc_max_p"] > 0.05  # ...and so is its null
    planted = noise.clone()
    planted[:, 7] = torch.as_tensor(memorised * 1.0)
    got = memorisation_latents(planted, memorised, bucket, permutations=200)
    assert got["table"][0] == (7, 1.0) and got["auc_max_p"] < 0.01
    assert memorisation_latents(noise, np.zeros(90, dtype=bool), bucket, 10) is None  # nothing memorised: undefined
