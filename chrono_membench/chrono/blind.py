"""Blind baselines: how well the probe windows' *text alone* tells their labels apart, with no model at all.

Das et al. (2024, "Blind Baselines Beat Membership Inference Attacks for Foundation Models") show that on
benchmarks whose members and non-members differ in distribution, a bag-of-words classifier that never looks at
the model beats published membership-inference attacks. A membership (seen vs unseen) or time (early vs late
bucket) claim is only about the model if such a classifier sits at chance on the same windows.

The classifier: each window's tokens as a bag of token ids (TF-IDF weighted, unigrams and bigrams of ids), a
logistic regression, cross-fitted over stratified folds so every window is scored by a model that did not see it
(Das et al. use the same recipe over words and character n-grams; token ids are the LM's own units and need no
detokenising). Windows cut from one packed row can share tokens (the next document's window may hold this one's
scored tail in its 32-token context), so the folds keep each row's windows together (`groups`): split apart, a
window's own tokens in the training folds let the classifier recognise it — on the study's probe set that leak
alone read 0.62 [0.58, 0.66] seen vs unseen with no shift in the text; held together, 0.52 [0.47, 0.56] (folds by
sklearn's StratifiedGroupKFold, then; now rows stratified by label and size: the study's s5 reads 0.55 [0.49, 0.61]). The
AUROC of the cross-fitted scores comes with the Hanley–McNeil / Newcombe interval the MIA AUROCs use
(chrono/stats.auroc_interval), widened by what label-permuted refits show a cross-fit adds (blind_auroc).
"""

from __future__ import annotations

import random
import warnings

import numpy as np
from scipy import stats

from chrono_membench.chrono.stats import auroc, auroc_interval, stratified_auroc

FOLDS = 5
NULL_FITS = 30  # label-permuted refits that measure the cross-fitted AUROC's spread under the null


def blind_auroc(windows: list[list[int]], labels: np.ndarray, seed: int = 0, folds: int = FOLDS,
                strata: np.ndarray | None = None, groups: np.ndarray | None = None,
                null_fits: int = NULL_FITS) -> tuple[float, float, float] | None:
    """(AUROC, low, high) of a cross-fitted text-only classifier of the binary `labels` (1 = member / late) over
    `windows` (token ids); None when a class has fewer than `folds` windows (rows, with `groups`). With `strata` (the
    windows' sources) the scores are compared within each stratum only (stats.stratified_auroc), as the claims it
    guards are read: a source that one class holds and the other lacks then tells them apart by source, not by what
    time did. With `groups` (the row each window was cut from) a row's windows fall in one fold and keep one label
    under the null.

    The interval: the Hanley–McNeil one (Newcombe's, or stratified_auroc's) holds the scoring function fixed, but a
    cross-fitted one is itself random (which folds, what each fit learned), which left it covering 0.5 in 84 % of
    row-permuted nulls on the study's windows. So `null_fits` refits with the labels permuted measure the AUROC's
    spread under the null; its excess over the Hanley–McNeil spread there is added to the observed value's variance
    (both half-widths scaled alike)."""
    state = random.getstate()  # importing these draws from Python's global RNG, once per process: a resumed run
    try:                       # would import them (and draw) after its RNG states were restored, and diverge
        from sklearn import config_context
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
    finally:
        random.setstate(state)
    labels = np.asarray(labels, dtype=int)
    ids, rows = (labels, np.arange(len(labels))) if groups is None else np.unique(groups, return_inverse=True)

    def y_row(y: np.ndarray) -> np.ndarray:  # each row's label (a row's windows share one)
        out = np.zeros(len(ids), int)
        out[rows] = y
        return out

    row_label = y_row(labels)
    if min(row_label.sum(), (1 - row_label).sum()) < folds:  # every fold's training part must hold both classes
        return None
    text = [" ".join(map(str, w)) for w in windows]
    features = TfidfVectorizer(token_pattern=r"\d+", ngram_range=(1, 2), sublinear_tf=True).fit_transform(text)
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)

    size = np.minimum(np.bincount(rows), 3)  # windows per row, 3 for 3 or more

    def fit(y: np.ndarray) -> tuple[float, float, float]:
        # the rows are split, stratified by their label and size, so each fold's windows hold the classes in the
        # run's proportions (a fold whose training part holds more members than the rest shifts its test part's
        # scores: cross-fitted AUROCs under the null sink below 0.5); a row's windows go where it goes (sklearn's
        # StratifiedGroupKFold balances by a greedy search that took half of this function's time)
        fold_of = np.empty(len(ids), int)
        with warnings.catch_warnings():  # a (label, size) cell of fewer rows than folds: spread as it can be
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            for k, (_, test) in enumerate(split.split(np.zeros(len(ids)), y_row(y) * 4 + size)):
                fold_of[test] = k
        score = np.empty(len(y))
        with config_context(assume_finite=True, skip_parameter_validation=True):  # sklearn's checks: 4/5 of the time
            for k in range(folds):  # what cross_val_predict does, fold by fold, without its joblib and validation
                test = fold_of[rows] == k
                score[test] = LogisticRegression(solver="liblinear").fit(features[~test], y[~test]).decision_function(
                    features[test])
        if strata is not None:
            return stratified_auroc(score, y == 1, strata)
        return float(auroc(score[y == 1], score[y == 0])), *auroc_interval(score[y == 1], score[y == 0])

    value, low, high = fit(labels)
    rng = np.random.default_rng(seed)
    null = np.array([fit(rng.permutation(row_label)[rows]) for _ in range(null_fits)])
    if null_fits < 2 or not np.isfinite(null).all():
        return value, low, high
    z = stats.norm.ppf(0.975)
    fixed = np.mean(((null[:, 2] - null[:, 1]) / (2 * z)) ** 2)  # the Hanley–McNeil variance under the null
    observed = ((high - low) / (2 * z)) ** 2
    scale = np.sqrt(1 + max(0.0, null[:, 0].var(ddof=1) - fixed) / max(observed, 1e-12))
    return value, max(0.0, value - scale * (value - low)), min(1.0, value + scale * (high - value))
