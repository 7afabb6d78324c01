"""`scrm serve` refuses to start, with exit code 2 and the command that fixes it, when something is missing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from training.cli import app


def serve(*args: str):
    return CliRunner().invoke(app, ["serve", *args])


def test_needs_a_data_directory(monkeypatch):
    monkeypatch.delenv("SCRM_DATA_DIR", raising=False)
    result = serve()
    assert result.exit_code == 2 and "--data" in result.output


def test_missing_directory_names_scrm_simulate(tmp_path):
    result = serve("--data", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "scrm simulate" in result.output.replace("\n", " ")


def test_missing_snapshot_names_scrm_features_build(tmp_path):
    result = serve("--data", str(tmp_path))
    assert result.exit_code == 2
    assert "scrm features build --data" in result.output.replace("\n", " ")


@pytest.mark.parametrize("via_env", [False, True])
def test_missing_champion_names_scrm_train_all(trained_setup, monkeypatch, via_env):
    # MLflow points at this test's empty store (tests/conftest.py); the data has a snapshot
    if via_env:
        monkeypatch.setenv("SCRM_DATA_DIR", str(trained_setup.data_dir))
        result = serve()
    else:
        result = serve("--data", str(trained_setup.data_dir))
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "no champion data.churn_90d or data.clv_365d model of brand data" in text and "scrm train all --data" in text and "--as-of 2026-01-01" in text


def test_example_id_is_a_person_the_service_scores(tmp_path):
    """The curl example printed at start-up names someone with a paid order, not the first row whoever it is."""
    import pandas as pd

    from training.cli import _example_person

    path = tmp_path / "features.parquet"
    pd.DataFrame({"person_id": ["p_browser", "p_buyer"], "orders": [0, 3]}).to_parquet(path)
    assert _example_person(path) == "p_buyer"
    pd.DataFrame({"person_id": ["p_browser"], "orders": [0]}).to_parquet(path)
    assert _example_person(path) == "p_browser"  # nobody bought yet: still a real id
    assert _example_person(tmp_path / "missing.parquet") == "<person_id or customer_key>"


# --- the whole snapshot is checked before the server starts -----------------------------------------------------


def _copy_data(trained_setup, tmp_path):
    """A data directory holding a copy of the session snapshot (to damage); its snapshot directory."""
    import shutil

    snap = next((trained_setup.data_dir / "features").glob("as_of=*"))
    dest = tmp_path / "data" / "features" / snap.name
    shutil.copytree(snap, dest)
    return tmp_path / "data", dest


def _truncate(snapshot, _):
    path = snapshot / "features.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_identity(snapshot, _):
    (snapshot / "identity.parquet").unlink()


def _drop_orders(snapshot, _):
    import pandas as pd

    path = snapshot / "features.parquet"
    pd.read_parquet(path).drop(columns=["orders"]).to_parquet(path, index=False)


@pytest.mark.parametrize(("damage", "says"), [
    (_truncate, "features.parquet is not readable Parquet"),
    (_drop_identity, "missing identity.parquet"),
    (_drop_orders, "features.parquet has no column(s) orders"),
])
def test_a_damaged_snapshot_exits_2_naming_the_file_and_the_rebuild(trained_setup, tmp_path, damage, says):
    data, snapshot = _copy_data(trained_setup, tmp_path)
    damage(snapshot, tmp_path)
    result = serve("--data", str(data))
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert says in text and f"scrm features build --data {data} --as-of 2026-01-01" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(("damage", "says"), [
    (_truncate, "not readable Parquet"),
    (_drop_identity, "missing identity.parquet"),
    (_drop_orders, "no column(s) orders"),
])
def test_the_service_refuses_a_damaged_snapshot_with_the_fix(trained_setup, tmp_path, monkeypatch, damage, says):
    """The same check in the service itself (``bentoml serve`` without ``scrm serve``)."""
    from serving.service import ScrmService
    from serving.state import ServingSetupError

    data, snapshot = _copy_data(trained_setup, tmp_path)
    damage(snapshot, tmp_path)
    for key, value in trained_setup.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SCRM_DATA_DIR", str(data))
    with pytest.raises(ServingSetupError, match="scrm features build") as err:
        ScrmService()
    assert says in str(err.value)


def test_snapshot_under_another_pii_key_is_refused(trained_setup, monkeypatch):
    monkeypatch.setenv("SCRM_PII_KEY", "another-key")
    result = serve("--data", str(trained_setup.data_dir))
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "built under the PII key with fingerprint" in text and "another-key" not in text
