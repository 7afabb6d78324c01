"""The Bento: bentofile.yaml lists pyproject's dependencies, `bentoml build` succeeds and the Bento serves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_bentofile_lists_the_project_dependencies():
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert bentofile["service"] == "serving.service:ScrmService"
    assert bentofile["python"]["packages"] == project["dependencies"]


@pytest.mark.slow
@pytest.mark.integration
def test_bentoml_build_makes_a_bento_that_serves(trained_setup, tmp_path):
    """`bentoml build` in a throw-away BENTOML_HOME, then `bentoml serve scrm:latest` (outside the checkout)
    answers /readyz with SCRM_DATA_DIR and MLFLOW_TRACKING_URI pointing at the data and the registry."""
    bentoml = Path(sys.executable).with_name("bentoml")
    home = tmp_path / "bentoml-home"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    built = subprocess.run([str(bentoml), "build", "--output", "tag"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    tag = built.stdout.strip().rsplit("__tag__:", 1)[-1]
    src = home / "bentos" / "scrm" / tag.split(":")[1] / "src"
    assert (src / "serving" / "service.py").is_file() and (src / "training" / "tiers.yaml").is_file()
    assert not (src / "tests").exists()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # the code comes from the Bento
    run_env.update(trained_setup.env())
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(bentoml), "serve", "scrm:latest", "--port", str(port)], cwd=tmp_path,
                                env=run_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline, ready = time.monotonic() + 300, False
            while time.monotonic() < deadline and proc.poll() is None and not ready:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    time.sleep(0.5)
            assert ready, log_path.read_text(errors="replace")[-3000:]
            r = httpx.post(f"http://127.0.0.1:{port}/tier", json={"customer_ids": ["nobody"]}, timeout=30)
            assert r.status_code == 200 and r.json()["not_found"] == ["nobody"]
            assert r.json()["feature_as_of"] == trained_setup.as_of.isoformat()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
