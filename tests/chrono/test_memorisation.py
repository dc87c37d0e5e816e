"""Memorisation probes: extraction on a copying model and a random one, canary exposure (docs/design.md §4.5)."""

import math

import pytest
import torch

import numpy as np
from scipy import stats

from chrono_membench.chrono.memorisation import (
    exposure, extraction_scores, extrapolated_exposure, extrapolated_interval, greedy_continuation, sequence_nll,
)




def copy_model(docs):
    """A model 'forced to copy': it predicts, at every position, the next token of whichever document the
    prefix belongs to."""
    table = {tuple(d[:32].tolist()): d for d in docs}

    def logits(tokens):
        out = torch.full((*tokens.shape, 1000), -10.0)
        for b, row in enumerate(tokens):
            doc = table[tuple(row[:32].tolist())]
            for t in range(tokens.shape[1]):
                if t + 1 < len(doc):
                    out[b, t, doc[t + 1]] = 10.0
        return out
    return logits


def test_exact_match_on_a_copying_model_and_on_a_random_one():
    torch.manual_seed(0)
    docs = torch.randint(0, 1000, (4, 64))
    scores = extraction_scores(copy_model(docs), docs)
    assert scores["exact_match"].tolist() == [1.0] * 4 and scores["token_match"].tolist() == [1.0] * 4
    assert (scores["loss"] < 1e-3).all() and (scores["min_k"] > -1e-3).all()  # Min-K%: log-probs, ≈ 0 here
    def random_model(tokens):
        return torch.randn(*tokens.shape, 1000, generator=torch.Generator().manual_seed(tokens.sum().item()))

    scores = extraction_scores(random_model, docs)
    assert scores["exact_match"].sum() == 0 and scores["token_match"].mean() < 0.05
    assert scores["loss"].mean() > math.log(1000) - 1


def test_greedy_continuation_appends_argmax():
    logits = lambda t: torch.nn.functional.one_hot((t + 1) % 50, 50).float()  # noqa: E731  next = current + 1
    assert greedy_continuation(logits, torch.tensor([[3, 4]]), 3).tolist() == [[5, 6, 7]]


def test_exposure():
    assert exposure(1.0, torch.tensor([2.0, 3.0, 4.0])) == 2.0  # ranks first of 4 → log2(4)
    assert exposure(5.0, torch.tensor([2.0, 3.0, 4.0])) == 0.0  # ranks last
    assert exposure(2.5, torch.tensor([2.0, 3.0, 4.0])) == pytest.approx(1.0)
    # sequence_nll gives the lowest NLL to the candidate a model that memorised the secret predicts.
    prefix, secret = torch.tensor([1, 2, 3]), torch.tensor([7, 8, 9])
    memorised = torch.cat([prefix, secret])

    def logits(tokens):  # at position t, predict memorised[t + 1]
        nxt = torch.cat([memorised[1:], memorised[:1]])[: tokens.shape[1]]
        return torch.nn.functional.one_hot(nxt, 10).float().expand(len(tokens), -1, -1) * 20

    candidates = torch.stack([secret, torch.tensor([4, 4, 4]), torch.tensor([7, 8, 0]), torch.tensor([5, 6, 0])])
    nll = sequence_nll(logits, prefix, candidates)
    assert exposure(nll[0].item(), nll[1:]) == pytest.approx(2.0)  # maximal: first of 4


def test_extrapolated_exposure_recovers_a_known_rank_beyond_the_candidate_count():
    """Candidates' NLLs drawn from a known skew-normal; a secret at its 2^-b quantile would rank about N·2^-b among
    N candidates: exposure ≈ b bits. Rank-based exposure stops at log2(#candidates + 1); the fit does not."""
    law = stats.skewnorm(2.0, loc=100.0, scale=10.0)
    others = torch.tensor(law.rvs(size=1000, random_state=np.random.default_rng(0)))
    for bits in (4, 10, 16):
        true_nll = law.ppf(2.0 ** -bits)
        assert extrapolated_exposure(true_nll, others) == pytest.approx(bits, abs=2)
    assert exposure(law.ppf(2.0 ** -16), others) == pytest.approx(math.log2(1001))  # capped
    assert extrapolated_exposure(law.median(), others) == pytest.approx(1.0, abs=0.2)  # the median: 1 bit


def test_the_extrapolated_interval_holds_the_estimate_and_narrows_with_more_candidates():
    law = stats.skewnorm(2.0, loc=100.0, scale=10.0)
    secrets = {"far": np.array([law.ppf(2.0 ** -20)] * 2), "median": np.array([law.median()])}
    widths = []
    for n in (127, 2047):
        others = law.rvs(size=n, random_state=np.random.default_rng(n))
        point = extrapolated_exposure(secrets["far"], others)
        got = extrapolated_interval(secrets, others, resamples=60, seed=0)
        assert got["far"][0] <= point.mean() <= got["far"][1] and got["median"][0] < 1.0 < got["median"][1] + 0.3
        widths.append(got["far"][1] - got["far"][0])
    assert widths[1] < 0.5 * widths[0], widths  # the fit's sampling error: ~1/√n
    assert extrapolated_interval(secrets, others, resamples=60, seed=0) == got  # reproducible from the seed


def test_min_k_is_the_mean_log_prob_of_the_least_likely_20_percent():
    """Shi et al.'s Min-K% Prob on known per-token probabilities: the mean log-probability of the ceil(0.2·32) = 7
    scored tokens the model found least likely."""
    torch.manual_seed(1)
    windows = torch.randint(0, 50, (2, 64))
    bias = torch.randn(2, 64, 50)

    def logits(tokens):  # each window's own logits, whatever rows share the call
        rows = [next(i for i, w in enumerate(windows) if torch.equal(w[:tokens.shape[1]], row)) for row in tokens]
        return bias[rows, : tokens.shape[1]]

    scores = extraction_scores(logits, windows, generate_fn=lambda prefix, n: torch.zeros(len(prefix), n, dtype=torch.long))
    log_p = bias[:, 31:63].log_softmax(-1).gather(-1, windows[:, 32:, None]).squeeze(-1)
    expected = log_p.sort(dim=1).values[:, :7].mean(1)
    torch.testing.assert_close(scores["min_k"], expected)
    torch.testing.assert_close(scores["loss"], -log_p.mean(1))


@pytest.mark.parametrize("kind", ["llama", "gemma-3"])
def test_prefixed_nll_equals_full_forwards(kind):
    """The canary candidates scored from one cached prefix read what full forwards of prefix + candidate read
    (Gemma 3: sliding-window and global layers in one cache)."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

    from chrono_membench.chrono.memorisation import prefixed_nll

    torch.manual_seed(0)
    config = (Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4)
              if kind == "gemma-3" else
              LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2))
    model = AutoModelForCausalLM.from_config(config).eval()
    prefix, candidates = torch.tensor([5, 17, 42, 8]), torch.randint(0, 300, (37, 6))
    full = sequence_nll(lambda t: model(t).logits, prefix, candidates, batch=16)
    torch.testing.assert_close(prefixed_nll(model, prefix, candidates, batch=10), full, rtol=1e-5, atol=1e-4)


def test_skewnorm_fit_check_flags_a_tail_the_fit_gets_wrong():
    """On skew-normal candidates the fit is near-exact (KS small, tail error ≈ 0 bits); on a law with a heavier
    lower tail than any skew-normal (a 5 % mixture far below), the tail error is large and negative."""
    from chrono_membench.chrono.memorisation import skewnorm_fit_check

    rng = np.random.default_rng(0)
    good = stats.skewnorm(2.0, loc=100.0, scale=10.0).rvs(size=2000, random_state=rng)
    ks, tail = skewnorm_fit_check(good)
    assert ks < 0.03 and abs(tail) < 0.5
    bad = np.concatenate([good[:1900], rng.normal(40.0, 3.0, size=100)])
    ks_bad, tail_bad = skewnorm_fit_check(bad)
    assert ks_bad > ks and tail_bad < -1.0


def _token_law(kind: str, size: int, rng) -> np.ndarray:
    """Per-token NLLs (nats, on a 0.01 grid) of a position's alphabet: exp(−nll) holds half the position's mass,
    the rest of the vocabulary the other half. The three laws the extrapolation's coverage was measured under."""
    if kind == "gamma":
        g = rng.gamma(2.0, 1.5, size)
    elif kind == "zipf":
        g = 1.1 * np.log(np.arange(1, size + 1))
    else:
        g = stats.skewnorm.rvs(4, scale=3, size=size, random_state=rng)
    return np.round((g + np.logaddexp.reduce(-g) + 0.7) / 0.01) * 0.01


def _uniform_cdf(nlls: list[np.ndarray]) -> tuple[int, np.ndarray]:
    """P_uniform(ℓ ≤ k·0.01) for the sum of the positions' NLLs, exactly (direct convolution on the grid)."""
    pmf, offset = np.array([1.0]), 0
    for nll in nlls:
        k = np.round(nll / 0.01).astype(int)
        pmf, offset = np.convolve(pmf, np.bincount(k - k.min()) / len(k)), offset + k.min()
    return offset, np.cumsum(pmf)


@pytest.mark.parametrize("kind", ["skewnormal", "gamma", "zipf"])
def test_the_sampled_exposure_covers_under_three_token_laws(kind):
    """Secrets of 12 tokens from a 1,000-token alphabet whose per-token losses follow a skew-normal, gamma or Zipf
    law; the canary's loss placed at a true exposure of 20 / 40 / 60 bits (computed exactly); 1,024 draws from the
    tempered ladder per replicate, 100 replicates: the 95 % interval covers ≥ 0.90 at each (the skew-normal
    extrapolation covers 0.00–0.20 under the gamma-sum and Zipf-sum laws at 40–60 bits)."""
    from scipy.special import logsumexp

    from chrono_membench.chrono.memorisation import TEMPERATURES, sampled_exposure

    rng = np.random.default_rng({"skewnormal": 0, "gamma": 1, "zipf": 2}[kind])
    size, length, n = 1000, 12, 1024
    nlls = [_token_law(kind, size, rng) for _ in range(length)]
    offset, cdf = _uniform_cdf(nlls)
    logq = [[-b * x - logsumexp(-b * x) for b in TEMPERATURES] for x in nlls]  # each position's q_β
    per = n // len(TEMPERATURES)
    for target in (20, 40, 60):
        k = int(np.searchsorted(cdf, 2.0 ** -target))
        secret_nll, truth = (offset + k) * 0.01, -math.log2(cdf[k])
        covered = 0
        for _ in range(100):
            ell, lq = [], []
            for b in range(len(TEMPERATURES)):
                idx = [rng.choice(size, per, p=np.exp(logq[j][b])) for j in range(length)]
                ell.append(sum(nlls[j][idx[j]] for j in range(length)))
                every = np.stack([sum(logq[j][c][idx[j]] for j in range(length)) for c in range(len(TEMPERATURES))])
                lq.append(logsumexp(every, axis=0) - math.log(len(TEMPERATURES)))
            # the alphabet holds half of each position's mass: log q over the alphabet is what the sampler returns
            bits, lo, hi = sampled_exposure(np.array([secret_nll + 1e-9]), np.concatenate(ell), np.concatenate(lq),
                                            length, size)
            covered += lo[0] <= truth <= hi[0]
        assert covered / 100 >= 0.90, (kind, target, covered)


def test_sample_secrets_reads_the_models_own_distribution_and_its_rank_among_all_secrets():
    """A tiny Llama, secrets of 2 tokens from a 12-token alphabet: every one of the 144 secrets enumerated gives each
    secret's exact rank among all; the sampled exposure, from the model's own tempered draws, finds it within its
    interval, and its NLLs are the model's (prefixed_nll on the same secrets)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from chrono_membench.chrono.memorisation import prefixed_nll, sample_secrets, sampled_exposure

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2)).eval()
    prefix, low, high = torch.tensor([5, 17, 42, 8]), 100, 112
    every = torch.cartesian_prod(torch.arange(low, high), torch.arange(low, high))
    exact = prefixed_nll(model, prefix, every).double().numpy()
    nll, logq = sample_secrets(model, prefix, 4096, 2, (low, high), torch.Generator().manual_seed(0))
    assert (np.abs(nll.numpy()[:, None] - exact[None]).min(1) < 1e-4).all()  # every draw's NLL is a real secret's
    for secret in (int(exact.argmin()), int(np.argsort(exact)[20]), int(exact.argmax())):
        truth = -math.log2((exact <= exact[secret]).mean())
        bits, lo, hi = sampled_exposure(np.array([exact[secret]]), nll.numpy(), logq.numpy(), 2, high - low)
        assert lo[0] <= truth <= hi[0] and abs(bits[0] - truth) < 0.5, (secret, truth, bits, lo, hi)


def test_scored_token_losses_hold_one_chunk_of_logits_at_a_time_and_match_the_whole_batch():
    """A probe set's logits (windows × 64 × vocabulary floats: 13 GB for 1,048 windows of SmolLM2) must never be held
    at once: the model is called on `chunk` windows at a time (the last chunk padded to that size: see the test
    below), and the losses are those of one call on all of them."""
    from chrono_membench.chrono.memorisation import scored_token_losses, token_losses

    torch.manual_seed(0)
    weights, calls = torch.randn(1000, 1000), []

    def logits(tokens):
        calls.append(len(tokens))
        return weights[tokens]

    windows = torch.randint(0, 1000, (40, 64))
    chunked = scored_token_losses(logits, windows, chunk=16)
    assert calls == [16, 16, 16] and torch.equal(chunked, token_losses(weights[windows], windows))
    scores = extraction_scores(logits, windows, greedy=False, losses=chunked)  # a forward's own losses: no new call
    assert calls == [16, 16, 16] and torch.equal(scores["loss"], chunked.mean(1))


def test_the_samplers_draws_follow_the_softmax_and_its_normalisers_are_the_ladders_logsumexps():
    from chrono_membench.chrono.memorisation import TEMPERATURES, _draw, _log_normalisers

    torch.manual_seed(0)
    logp = (torch.randn(64, 3000) * 3).log_softmax(-1)
    direct = torch.stack([(b * logp).logsumexp(-1).double() for b in TEMPERATURES], 1)
    assert torch.allclose(_log_normalisers(logp, TEMPERATURES), direct, atol=1e-5)
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0, -float("inf")]]).expand(100_000, -1)
    tokens = _draw(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=5).double() / len(tokens)
    p = torch.softmax(logits[0].double(), -1)
    assert freq[4] == 0 and ((freq - p).abs() <= 4 * (p * (1 - p) / len(tokens)).sqrt() + 1e-12).all()


def test_a_window_scores_the_same_bits_whichever_windows_share_its_forward():
    """Under bf16 a row's logits depend on how many rows share the forward (on SmolLM2-135M's shape here, a window's
    loss moved 0.004 nats between a forward of 5 windows and one of 16); scored_token_losses pads every chunk to one
    size, so a window scored alone among 5 and the same window among 21 read the same bits. Without it an LM that
    never changed read DiD and forgetting slopes that were bf16 residue (the CPU study's frozen twin: a slope of
    1.7e-5 [1.5e-5, 1.8e-5] nats per 100 steps, "detected")."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from chrono_membench.chrono.memorisation import scored_token_losses

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=2,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)  # SmolLM2-135M's
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()

    def logits(tokens):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(tokens, logits_to_keep=33).logits.float()

    windows = torch.randint(0, 49152, (21, 64), generator=torch.Generator().manual_seed(1))
    alone, among = scored_token_losses(logits, windows[8:13]), scored_token_losses(logits, windows)[8:13]
    assert alone.shape == (5, 32) and torch.equal(alone, among)
