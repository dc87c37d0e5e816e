"""Blind baselines (chrono/blind.py): at chance when labels do not depend on the text, with an interval that
covers 0.5 there; near 1 when the two classes' texts differ (the distribution shift Das et al. measure)."""

import random

import numpy as np

from chrono_membench.chrono.blind import blind_auroc


def windows(rng, n, vocab=(100, 400), marker=None, rate=0.0):
    """n windows of 64 token ids; with a marker, each token is that id with probability `rate`."""
    w = rng.integers(*vocab, size=(n, 64))
    if marker is not None:
        w[rng.random((n, 64)) < rate] = marker
    return w.tolist()


def test_chance_when_the_text_carries_no_label_and_its_interval_covers():
    rng = np.random.default_rng(0)
    covered, values = 0, []
    for replicate in range(40):  # labels drawn independently of the text: the true AUROC is 0.5
        text = windows(rng, 96)
        labels = rng.random(96) < 0.5
        auc, low, high = blind_auroc(text, labels, seed=replicate)
        covered += low <= 0.5 <= high
        values.append(auc)
    assert abs(np.mean(values) - 0.5) < 0.03
    assert covered / 40 >= 0.85  # nominal 0.95 (100 replicates: 0.94)


def test_a_shift_in_the_text_is_found_and_too_few_windows_give_none():
    rng = np.random.default_rng(1)
    text = windows(rng, 40) + windows(rng, 40, marker=7, rate=0.05)  # members hold token 7 about 3 times each
    labels = np.r_[np.zeros(40), np.ones(40)]
    state = random.getstate()
    auc, low, high = blind_auroc(text, labels)
    assert auc > 0.9 and low > 0.7  # the interval widened by the refits (blind_auroc): 0.75 here
    assert random.getstate() == state  # nor does its lazy import of sklearn draw from Python's RNG (a resume would)
    assert blind_auroc(text[:44], labels[:44]) is None  # 4 members: fewer than the 5 folds
    rows = np.r_[np.arange(40), 40 + np.arange(40) // 10]  # the 40 members cut from 4 rows: fewer rows than folds
    assert blind_auroc(text, labels, groups=rows) is None


def test_within_source_a_source_only_one_class_holds_does_not_separate_them_and_its_interval_covers():
    """The study's early-vs-late baseline: math windows only in the first bucket let the pooled classifier tell the
    buckets apart by source; within source (how the time claims are read) it sits at chance, covering 0.5, while a
    real within-source shift is still found."""
    rng = np.random.default_rng(2)
    covered, pooled, within = 0, [], []
    for replicate in range(20):
        text = windows(rng, 60) + windows(rng, 60) + windows(rng, 30, vocab=(500, 800))  # source 2: its own words
        labels = np.r_[rng.random(120) < 0.5, np.zeros(30, bool)]  # source 2 only in class 0; sources 0/1: chance
        strata = np.r_[np.zeros(60), np.ones(60), np.full(30, 2)]
        pooled.append(blind_auroc(text, labels, seed=replicate, null_fits=0)[0])
        auc, low, high = blind_auroc(text, labels, seed=replicate, strata=strata)
        within.append(auc)
        covered += low <= 0.5 <= high
    assert np.mean(pooled) > 0.6 and abs(np.mean(within) - 0.5) < 0.05 and covered / 20 >= 0.85
    text = windows(rng, 40) + windows(rng, 40, marker=7, rate=0.05) + windows(rng, 30, vocab=(500, 800))
    labels, strata = np.r_[np.zeros(40), np.ones(40), np.zeros(30)], np.r_[np.zeros(80), np.ones(30)]
    auc, low, _ = blind_auroc(text, labels, strata=strata)
    assert auc > 0.8 and low > 0.65  # the members' marker token, found within their source


def packed_rows(rng, n_rows):
    """Windows cut from packed rows as the probe set cuts them: one or two per row (as in the study's probe set, where
    a third of the rows give two), the second's 32-token context holding the first's scored tail (a document's window,
    then the next document's), so a row's windows share tokens. Returns the windows and each one's row."""
    text, rows = [], []
    for r in range(n_rows):
        n = 1 + (rng.random() < 1 / 3)
        row = rng.integers(100, 4000, size=32 * (n + 1)).tolist()
        text += [row[32 * i:32 * i + 64] for i in range(n)]
        rows += [r] * n
    return text, np.array(rows)


def test_windows_from_one_row_are_held_out_together_so_their_shared_tokens_do_not_pass_for_a_label():
    """Labels by row at random (a row is wholly seen or wholly unseen, as in the probe set), text with no shift:
    folds that split a row's windows let the classifier recognise a window by its neighbour's tokens (AUROC well
    above 0.5); folds by row sit at chance and their interval covers 0.5."""
    rng = np.random.default_rng(3)
    covered, split, held = 0, [], []
    for replicate in range(40):
        text, rows = packed_rows(rng, 90)
        labels = (rng.random(90) < 0.5)[rows]
        if replicate < 10:
            split.append(blind_auroc(text, labels, seed=replicate, null_fits=0)[0])
        auc, low, high = blind_auroc(text, labels, seed=replicate, groups=rows)
        held.append(auc)
        covered += low <= 0.5 <= high
    assert np.mean(split) > 0.6
    assert abs(np.mean(held) - 0.5) < 0.04 and covered / 40 >= 0.85  # 100 replicates: 0.94
