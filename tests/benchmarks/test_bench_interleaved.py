"""benchmarks/bench_interleaved.py: per-round ratios and pooled medians, checked against numpy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_interleaved.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_interleaved", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as mp:  # the script imports benchmarks/harness.py, as when run from there
        mp.syspath_prepend(str(SCRIPT.parent))
        spec.loader.exec_module(mod)
    return mod


def _rounds(base: float, phase, n: int, rng, probes=None):
    """One {"times", "probes"} per round; probes default to a steady 800 GOP/s."""
    out = []
    for r, f in enumerate(phase):
        p = [800.0] * (n + 1) if probes is None else list(probes[r])
        out.append({"times": list(base * f * rng.uniform(0.98, 1.02, n)), "probes": p})
    return out


def test_summary_pairs_each_round_with_the_eager_turn_of_that_round(bench):
    rng = np.random.default_rng(0)
    # host phases: each round has its own speed factor shared by both workers; the variant is 4x faster
    phase = rng.uniform(1.0, 1.4, 5)
    times = {"eager": {1: _rounds(0.8, phase, 3, rng), 4: _rounds(3.2, phase, 2, rng)},
             "fast": {1: _rounds(0.2, phase, 3, rng), 4: _rounds(0.9, phase, 2, rng)}}
    s = bench.summarize(times, ["eager", "fast"])["fast"]
    med = {k: {B: np.array([np.median(r["times"]) for r in times[k][B]]) for B in (1, 4)} for k in times}
    want1, want4 = med["eager"][1] / med["fast"][1], med["eager"][4] / med["fast"][4]
    np.testing.assert_allclose(s["ratio_b1"]["rounds"], want1, rtol=1e-12)
    np.testing.assert_allclose(s["ratio_b4"]["rounds"], want4, rtol=1e-12)
    assert s["ratio_b1"]["median"] == pytest.approx(float(np.median(want1)))
    assert s["ratio_b1"]["min"] == pytest.approx(want1.min()) and s["ratio_b1"]["max"] == pytest.approx(want1.max())
    # pairing removes the shared phase: every round's ratio is close to 4 although the times move 40 %
    assert np.all(np.abs(want1 - 4.0) < 0.2)
    pooled = np.concatenate([r["times"] for r in times["fast"][1]])
    assert s["ms_b1"] == pytest.approx(1e3 * float(np.median(pooled)))
    pooled4 = np.concatenate([r["times"] for r in times["fast"][4]])
    assert s["videos_per_s_b4"] == pytest.approx(4 / float(np.median(pooled4)))
    # steady probes: every call is clean
    assert s["clean_b1"]["calls"] == s["clean_b1"]["of"] == 15


def test_clean_calls_are_those_with_both_probes_near_the_best(bench):
    rng = np.random.default_rng(1)
    # round 0 fast (probes 800), round 1 slow (probes 600): the variant slows 40 % there, eager 10 %
    probes3 = [[800.0] * 4, [600.0] * 4]
    times = {"eager": {1: _rounds(0.8, [1.0, 1.1], 3, rng, probes3), 4: _rounds(3.2, [1.0, 1.1], 2, rng)},
             "fast": {1: _rounds(0.2, [1.0, 1.4], 3, rng, probes3), 4: _rounds(0.9, [1.0, 1.4], 2, rng)}}
    # one call of the fast round whose probe after it dropped: not clean either
    times["fast"][1][0]["probes"][3] = 700.0
    s = bench.summarize(times, ["eager", "fast"], clean_share=0.95)["fast"]
    fast_clean = times["fast"][1][0]["times"][:2]
    eager_clean = times["eager"][1][0]["times"]
    assert s["clean_b1"]["calls"] == 2 and s["clean_b1"]["of"] == 6
    assert s["clean_b1"]["ratio"] == pytest.approx(float(np.median(eager_clean) / np.median(fast_clean)))
    assert s["clean_b1"]["ratio"] == pytest.approx(4.0, rel=0.05)
    everything = np.median(np.concatenate([r["times"] for r in times["eager"][1]])) / \
        np.median(np.concatenate([r["times"] for r in times["fast"][1]]))
    assert everything < 3.9  # without the filter the slow phase drags the ratio down


def test_bad_counts_are_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])
