"""Acceptance: two brands in one MLflow store stay apart (issue 11, item 1).

Brand A is trained and scored, then brand B (other data) is trained in the same store, then A is scored again:
A's scores file is byte-identical, B's gate never saw A's champion, and A's models refuse an earlier date.
"""

from __future__ import annotations

import pandas as pd
import pytest
from model_data import AS_OF, FAST, FAST_CLV, HORIZON, N_CUTOFFS, small
from typer.testing import CliRunner

from training import registry
from training.cli import app
from training.train import train_all


def _train(s):
    return train_all(s.dataset, AS_OF, cache=s.cache, churn_horizon=HORIZON, clv_horizon=HORIZON,
                     n_cutoffs=N_CUTOFFS, churn_params=FAST, clv_params=FAST_CLV)


def _score(data_dir, out, *extra):
    result = CliRunner().invoke(app, ["score", "--data", str(data_dir), "--out", str(out), "--as-of",
                                      AS_OF.isoformat(), "--clv-horizon", str(HORIZON), *extra])
    return result, " ".join(result.output.split())


@pytest.mark.slow
def test_training_brand_b_leaves_brand_a_scores_byte_identical(tmp_path):
    a, b = small(), small(1200, seed=5)
    brand_a, brand_b = a.data_dir.name, b.data_dir.name
    trained_a = _train(a)
    assert trained_a["churn"].registered_name == f"{brand_a}.churn_{HORIZON}d"
    result, text = _score(a.data_dir, tmp_path / "a-before.parquet")
    assert result.exit_code == 0, result.output
    assert f"{brand_a}.churn_{HORIZON}d v1" in text

    trained_b = _train(b)
    for kind in ("churn", "clv"):
        assert trained_b[kind].registered_name == f"{brand_b}.{kind}_{HORIZON}d"
        assert trained_b[kind].decision.decision == "first_champion"  # never compared with brand A's champion
        assert registry.champion_version(trained_a[kind].registered_name) == 1

    result, _ = _score(a.data_dir, tmp_path / "a-after.parquet")
    assert result.exit_code == 0, result.output
    before, after = (tmp_path / "a-before.parquet").read_bytes(), (tmp_path / "a-after.parquet").read_bytes()
    assert before == after
    scores = pd.read_parquet(tmp_path / "a-after.parquet")
    assert (scores["churn_horizon_days"] == HORIZON).all() and (scores["clv_horizon_days"] == HORIZON).all()

    # brand A's champions were trained as of AS_OF: scoring an earlier date is refused, naming the fix
    result = CliRunner().invoke(app, ["score", "--data", str(a.data_dir), "--out", str(tmp_path / "old.parquet"),
                                      "--as-of", "2023-01-01", "--clv-horizon", str(HORIZON)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and not (tmp_path / "old.parquet").exists()
    assert f"was trained as of {AS_OF}, after the scoring date 2023-01-01" in text and "Score as of" in text

    # a horizon nobody trained: refused with the command that creates it
    result, text = _score(a.data_dir, tmp_path / "h30.parquet", "--churn-horizon", "30")
    assert result.exit_code == 2 and f"no champion churn model over 30 days ({brand_a}.churn_30d)" in text
    assert "scrm train" in text


@pytest.mark.slow
def test_a_champion_validated_on_another_window_is_rescored_on_the_challengers():
    from datetime import timedelta

    from training import tracking
    from training.fitting import fit_churn, validate
    from training.train import train_churn

    s = small()
    common = dict(cache=s.cache, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, model_params=FAST)
    old = train_churn(s.dataset, AS_OF - timedelta(days=30), **common)
    assert old.decision.decision == "first_champion"
    new = train_churn(s.dataset, AS_OF, **common)
    run = tracking.client().get_run(new.run_id)
    assert run.data.tags["scrm.gate_basis"] == "rescored"
    fitted = fit_churn(s.cache, AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, **FAST)  # the new window
    expected = validate(old.model, fitted, s.cache)["auc"]
    assert run.data.metrics["gate.champion_value"] == pytest.approx(expected)
    assert new.decision.champion_value == pytest.approx(expected) and expected != pytest.approx(
        tracking.client().get_run(old.run_id).data.metrics["val.auc"])
    assert new.decision.promoted == (new.metrics["auc"] > expected)
