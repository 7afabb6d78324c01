"""Lookalike audiences as runs (training.audience): consent policy, exclusion counts and plain-words notes."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from training.audience import lookalike_audience

N = 3_000


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    """3,000 people with 5 numeric features; the first 300 form a cluster; consent True / False / unknown."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(N, 5))
    x[:300, :2] += 2.0
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    frame.insert(0, "person_id", [f"p_{i:05d}" for i in range(N)])
    flag = np.array([False] * N, dtype=object)
    flag[rng.uniform(size=N) < 0.1] = True
    flag[rng.uniform(size=N) < 0.2] = None
    frame["marketing_opt_out"] = pd.array(flag, dtype="boolean")
    return frame


def _run(people, seeds, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning (naming a source line) may escape
        return lookalike_audience(people, seeds, log=False, random_state=0, **kwargs)


@pytest.mark.parametrize("consent", ["opt_out", "opt_in"])
def test_consent_policy_decides_who_may_be_in_the_audience(people, consent):
    seeds = people["person_id"].iloc[:150].tolist()
    result = _run(people, seeds, fraction=1.0, consent=consent)
    chosen = people.set_index("person_id").loc[result.audience["person_id"], "marketing_opt_out"]
    assert not chosen.eq(True).any()
    assert chosen.isna().any() == (consent == "opt_out")
    rest = ~people["person_id"].isin(seeds)
    flag = people.loc[rest, "marketing_opt_out"]
    assert result.excluded == {"seed": 150, "opt_out": int(flag.eq(True).sum()),
                               "consent_unknown": int(flag.isna().sum()) if consent == "opt_in" else 0}
    assert len(result.audience) == int(rest.sum()) - result.excluded["opt_out"] - result.excluded["consent_unknown"]


def test_unknown_seeds_short_audience_and_separable_seed_are_named(people):
    seeds = people["person_id"].iloc[:150].tolist() + ["nobody_1", "nobody_2"]
    result = _run(people, seeds, size=N, consent="opt_in")
    text = "\n".join(result.notes)
    assert "2 of 152 seed id(s) match no person_id or customer_key" in text and "nobody_1" in text
    assert f"asked for {N:,} people but only {len(result.audience):,}" in text
    assert "opted out" in text and "unknown consent (consent: opt_in)" in text
    assert result.seed_report["notes"] == result.notes
    assert "trivially separable" not in text  # a cluster with overlap is a real resemblance

    rule = people.loc[people["f3"] > 1.0, "person_id"]  # a seed defined by a rule on a visible column
    separable = _run(people, rule, fraction=0.1)
    note = next(n for n in separable.notes if "trivially separable" in n)
    assert "'f3'" in note and "exclude" in note


def test_cli_names_unknown_seeds_and_a_short_audience_without_python_warnings(tmp_path):
    """`scrm lookalike`: unknown seed ids are listed, a short audience is said, no warning names a source line."""
    from model_data import small
    from typer.testing import CliRunner

    from training.cli import app

    orders = small().dataset.orders
    keys = orders.groupby("customer_key")["amount"].sum().sort_values(ascending=False).index[:120].tolist()
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join([*keys, "nobody_1", "nobody_2"]) + "\n", encoding="utf-8")
    out = tmp_path / "audience.csv"
    result = CliRunner().invoke(app, ["lookalike", "--data", str(small().data_dir), "--seeds", str(seeds),
                                      "--out", str(out), "--size", "1000000", "--as-of", "2025-07-01"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "of 122 seed id(s) match no person_id or customer_key" in text  # nobody_* and keys seen only later
    assert "'nobody_1', 'nobody_2'" in text
    assert "asked for 1,000,000 people but only" in text
    assert "consent: opt_out" in text and "Warning" not in text and ".py:" not in text
    assert len(pd.read_csv(out)) < 1_000_000
