"""The closing summary's blind-baseline line: at chance it says so; where the text alone separates the columns,
it says that the claims on them are not only about the model."""

from chrono_membench import metric_keys as K
from studies.summary import _blind


def record(kind, value, lo, hi):
    return {K.blind(kind): value, K.blind(kind) + K.CI[0]: lo, K.blind(kind) + K.CI[1]: hi}


def test_the_blind_baseline_line_reads_its_interval_against_chance():
    (line,) = _blind({**record("member", 0.52, 0.40, 0.64), **record("time", 0.81, 0.70, 0.92)})
    member, time = line.split("; first vs")
    assert "seen vs unseen 0.52 [0.40, 0.64] (none detected" in member and "not only about the model" not in member
    assert " second half of the buckets 0.81 [0.70, 0.92] (detected)" in time and "not only about the model" in time
    assert _blind({}) == []


def test_a_stratified_purity_below_its_null_says_so():
    from studies.summary import _purity_verdict

    assert _purity_verdict(-0.0033, 0.0015, None) == "detected, below its null"
    assert _purity_verdict(+0.0033, 0.0015, None) == "detected"
    assert _purity_verdict(-0.001, 0.0015, None).startswith("none detected")
