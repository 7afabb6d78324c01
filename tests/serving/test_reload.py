"""Hot reload: the service follows `scrm refresh` publications and champion moves without a restart.

In-process: a service on a publication reads the published scores (no scoring at start) and swaps to a new
publication or champion on ``reloader.check()``. Over HTTP: a real `scrm serve` polling every second keeps
answering /score at ~20 req/s while a refresh publishes another day; no request fails and every answer after the
swap carries the new ``feature_as_of``; ``POST /admin/reload`` needs the admin token; /metrics counts reloads.
"""

from __future__ import annotations

import threading
import time

import httpx
import pandas as pd
import pytest
from test_http import TOKEN, Server
from test_refresh import NEXT_DAY, next_month, private_copy

from training import publish, refresh

ADMIN = "admin-token"
NEW_DAY = NEXT_DAY  # the day after a month of new orders (test_refresh.next_month)
NO_TRAIN = {"retrain": "never", "log_mlflow": False}


@pytest.fixture
def setup(trained_setup, tmp_path, monkeypatch):
    copy = private_copy(trained_setup, tmp_path)
    for key, value in copy.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SCRM_API_TOKEN", raising=False)
    return copy


def test_service_reads_the_publication_and_swaps_on_check(setup, monkeypatch):
    from serving.service import ScrmService
    from training import registry

    first = refresh.refresh(setup.data_dir, **NO_TRAIN)
    assert first.status == "published"
    with monkeypatch.context() as m:  # start-up must read the published scores, never score the snapshot
        m.setattr("serving.state.score", lambda *a, **k: pytest.fail("scored at start despite a publication"))
        svc = ScrmService()
        state = svc.wait_until_ready(timeout=300)
    assert state.publication == first.publication.name
    published = pd.read_parquet(first.publication.scores_path)
    assert state.scores["churn_probability"].equals(published["churn_probability"])
    assert svc.reloader.check() == {"reloaded": False, "reason": "unchanged",
                                    "source": svc.reloader.served.describe()}

    second = refresh.refresh(setup.data_dir, as_of=next_month(setup.data_dir), **NO_TRAIN)
    assert second.status == "published", second.error
    assert svc.state is state  # nothing moves until the reloader looks
    outcome = svc.reloader.check()
    assert outcome["reloaded"] is True
    assert svc.state is not state and svc.state.as_of == NEW_DAY
    assert svc.state.publication == second.publication.name
    assert svc.state.models is state.models  # same champions: the loaded models are reused, not loaded again

    # a champion move alone: the published snapshot is scored again with the new champion
    current = registry.champion_version("data.churn_90d")
    other = next(v for v in setup.churn_versions if v != current)
    registry.promote("data.churn_90d", other)
    assert svc.reloader.check()["reloaded"] is True
    assert svc.state.model_versions["churn"] == str(other) and svc.state.as_of == NEW_DAY
    # ... unless a refresh is running: its publication comes next
    registry.promote("data.churn_90d", current)
    with publish.refresh_lock(setup.data_dir):
        waiting = svc.reloader.check()
    assert waiting["reloaded"] is False and "refresh" in waiting["reason"]
    assert svc.reloader.check()["reloaded"] is True
    assert svc.state.model_versions["churn"] == str(current)


def test_a_broken_publication_keeps_the_old_state(setup):
    from serving.service import ScrmService

    assert refresh.refresh(setup.data_dir, **NO_TRAIN).status == "published"
    svc = ScrmService()
    state = svc.wait_until_ready(timeout=300)
    second = refresh.refresh(setup.data_dir, as_of=next_month(setup.data_dir), **NO_TRAIN)
    second.publication.scores_path.unlink()  # corrupted after publication
    with pytest.raises(Exception, match="incomplete"):
        svc.reloader.check()
    assert svc.state is state
    assert svc.reloader.last_error is not None


@pytest.mark.integration
@pytest.mark.slow
def test_running_server_swaps_during_traffic_without_an_error(setup, tmp_path):
    first = refresh.refresh(setup.data_dir, **NO_TRAIN)
    assert first.status == "published"
    people = pd.read_parquet(first.publication.scores_path)["person_id"].tolist()[:100]
    server = Server(setup, tmp_path / "serve.log",
                    env={"SCRM_RELOAD_SECONDS": "1", "SCRM_ADMIN_TOKEN": ADMIN}).start()
    answers: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    r = c.post("/score", json={"customer_ids": people, "with_reasons": False})
                    answers.append((time.monotonic(), r.status_code,
                                    r.json().get("feature_as_of") if r.status_code == 200 else r.text[:200]))
                except httpx.HTTPError as exc:
                    answers.append((time.monotonic(), -1, repr(exc)))
                stop.wait(max(0.0, 0.05 - (time.monotonic() - sent)))  # ~20 requests/s

    worker = threading.Thread(target=traffic, daemon=True)
    try:
        worker.start()
        time.sleep(2)
        second = refresh.refresh(setup.data_dir, as_of=next_month(setup.data_dir), **NO_TRAIN)
        assert second.status == "published", second.error
        published_at = time.monotonic()
        deadline = published_at + 120
        while time.monotonic() < deadline:
            if answers and answers[-1][2] == NEW_DAY.isoformat():
                break
            time.sleep(0.2)
        swapped_at = time.monotonic()
        time.sleep(2)
        stop.set()
        worker.join(timeout=30)

        errors = [a for a in answers if a[1] != 200]
        assert errors == []
        assert len(answers) > 40
        after = [a[2] for a in answers if a[0] > swapped_at]
        assert after and set(after) == {NEW_DAY.isoformat()}
        seen = [a[2] for a in answers]
        assert seen[0] == str(setup.as_of) and seen[-1] == NEW_DAY.isoformat()

        admin = f"{server.url}/admin/reload"
        assert httpx.post(admin, json={}, timeout=30).status_code == 401
        assert httpx.post(admin, json={}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).status_code == 401
        r = httpx.post(admin, json={}, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["reloaded"] is False and r.json()["feature_as_of"] == NEW_DAY.isoformat()
        assert r.json()["publication"] == second.publication.name
        forced = httpx.post(admin, json={"force": True}, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
        assert forced.status_code == 200 and forced.json()["reloaded"] is True
        metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
        ok_line = next(line for line in metrics.splitlines() if line.startswith("scrm_reloads_total{") and 'outcome="ok"' in line)
        assert float(ok_line.split()[-1]) >= 2
        assert f'feature_as_of="{NEW_DAY.isoformat()}"' in metrics
        print(f"\n{len(answers)} answers, 0 errors; swap seen {swapped_at - published_at:.1f} s after publishing")
    finally:
        stop.set()
        server.stop()
