"""Blind baselines: how well the probe windows' *text alone* tells their labels apart, with no model at all.

Das et al. (2024, "Blind Baselines Beat Membership Inference Attacks for Foundation Models") show that on
benchmarks whose members and non-members differ in distribution, a bag-of-words classifier that never looks at
the model beats published membership-inference attacks. A membership (seen vs unseen) or time (early vs late
bucket) claim is only about the model if such a classifier sits at chance on the same windows.

The classifier: each window's tokens as a bag of token ids (TF-IDF weighted, unigrams and bigrams of ids), a
logistic regression, cross-fitted over stratified folds so every window is scored by a model that did not see it
(Das et al. use the same recipe over words and character n-grams; token ids are the LM's own units and need no
detokenising). The AUROC of the cross-fitted scores comes with the Hanley–McNeil / Newcombe interval the MIA AUROCs
use (chrono/stats.auroc_interval): the folds' scores are not exactly independent, so it is slightly narrow.
"""

from __future__ import annotations

import random

import numpy as np

from chrono_membench.chrono.stats import auroc, auroc_interval, stratified_auroc

FOLDS = 5


def blind_auroc(windows: list[list[int]], labels: np.ndarray, seed: int = 0, folds: int = FOLDS,
                strata: np.ndarray | None = None) -> tuple[float, float, float] | None:
    """(AUROC, low, high) of a cross-fitted text-only classifier of the binary `labels` (1 = member / late) over
    `windows` (token ids); None when a class has fewer than `folds` windows. With `strata` (the windows' sources)
    the scores are compared within each stratum only (stats.stratified_auroc), as the claims it guards are read:
    a source that one class holds and the other lacks then tells them apart by source, not by what time did."""
    state = random.getstate()  # importing these draws from Python's global RNG, once per process: a resumed run
    try:                       # would import them (and draw) after its RNG states were restored, and diverge
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
    finally:
        random.setstate(state)
    labels = np.asarray(labels, dtype=int)
    if min(labels.sum(), (1 - labels).sum()) < folds:
        return None
    text = [" ".join(map(str, w)) for w in windows]
    features = TfidfVectorizer(token_pattern=r"\d+", ngram_range=(1, 2), sublinear_tf=True).fit_transform(text)
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    score = cross_val_predict(LogisticRegression(max_iter=1000), features, labels, cv=split,
                              method="decision_function")
    if strata is not None:
        return stratified_auroc(score, labels == 1, strata)
    members, others = score[labels == 1], score[labels == 0]
    low, high = auroc_interval(members, others)
    return float(auroc(members, others)), low, high
