"""The FeatureConfig travels with the models: logged at training, used to score, required of served snapshots."""

from __future__ import annotations

import json

import pytest
from model_data import AS_OF, fitted_churn, fitted_clv, small

from features.config import FeatureConfig, FeatureConfigMismatch
from features.pipeline import Snapshot
from serving.state import ServingSetupError, ServingState
from training import pyfunc, registry, tracking
from training.scoring import Models, load_champions

OTHER = FeatureConfig(windows=(30, 60, 180, 365)).model_dump(mode="json")


def _register(name, fitted, config: dict | None) -> None:
    tags = {tracking.TAG_AS_OF: AS_OF.isoformat()}
    if config is not None:
        tags[tracking.TAG_FEATURE_CONFIG] = json.dumps(config, sort_keys=True)
    snapshot = small().cache.features(AS_OF)
    registered = registry.model_name("acme", name, 90)
    with tracking.start_run(name, run_name=f"{name} config test", tags=tags):
        info = pyfunc.log_model(fitted.model, input_example=snapshot[snapshot["orders"] >= 1].head(5),
                                registered_model_name=registered)
    registry.promotion_gate(registered, info.registered_model_version, metric="val.auc", value=0.5)


def test_check_snapshot_names_the_differing_keys():
    models = Models(fitted_churn().model, fitted_clv().model, feature_config=OTHER)
    models.check_snapshot({"config": OTHER})
    with pytest.raises(FeatureConfigMismatch) as info:
        models.check_snapshot({"config": FeatureConfig().model_dump(mode="json")})
    message = str(info.value)
    assert "windows" in message and "scrm features build --config" in message and info.value.field == ("config",)
    # a model logged before the config was (None) stands for the defaults
    Models(fitted_churn().model, fitted_clv().model).check_snapshot({"config": FeatureConfig().model_dump()})


def test_champions_carry_their_config_and_must_agree():
    _register("churn", fitted_churn(), OTHER)
    _register("clv", fitted_clv(), OTHER)
    assert load_champions(brand="acme", clv_horizon=90).features_config() == FeatureConfig.from_dict(OTHER)
    _register("clv", fitted_clv(), None)  # v2 on the defaults: no longer the churn champion's config
    registry.promote("acme.clv_90d", 2)
    with pytest.raises(FeatureConfigMismatch, match=r"acme.churn_90d v1 and the acme.clv_90d v2 use different"):
        load_champions(brand="acme", clv_horizon=90)


def test_service_refuses_a_snapshot_built_with_another_config():
    data = small()
    features = data.cache.features(AS_OF)
    snapshot = Snapshot(features=features, identity=data.cache.identity_at(AS_OF),
                        manifest={"as_of": AS_OF.isoformat(), "config": FeatureConfig().model_dump(mode="json")})
    models = Models(fitted_churn().model, fitted_clv().model, "1", "1", feature_config=OTHER)
    with pytest.raises(ServingSetupError, match="windows"):
        ServingState(models, snapshot)
