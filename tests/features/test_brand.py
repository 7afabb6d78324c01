"""brand.yaml: the brand id and its policies, defaults, and refusals that name the file and the key."""

from __future__ import annotations

import pytest

from features.brand import BrandConfigError, check_brand_id, load_brand


def test_defaults_come_from_the_directory(tmp_path):
    data = tmp_path / "acme beauty"
    data.mkdir()
    config = load_brand(data)
    assert (config.brand, config.consent, config.tiers) == ("acme_beauty", "opt_out", None)


def test_file_and_override(tmp_path):
    (tmp_path / "rules.yaml").write_text("{}\n")
    (tmp_path / "brand.yaml").write_text("brand: acme\nconsent: opt_in\ntiers: rules.yaml\n")
    config = load_brand(tmp_path)
    assert (config.brand, config.consent, config.tiers) == ("acme", "opt_in", tmp_path / "rules.yaml")
    assert load_brand(tmp_path, brand="other").brand == "other"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("consent: maybe\n", "consent must be one of"),
        ("brand: acme\nconsnet: opt_in\n", "unknown key(s) ['consnet']"),
        ("brand: 'a b'\n", "brand id 'a b' is not usable"),
        ("tiers: missing.yaml\n", "does not exist"),
        ("calendar: missing.yaml\n", "calendar file"),
        ("[1, 2]\n", "expected a mapping"),
        ("brand: [\n", "not valid YAML"),
    ],
)
def test_refusals_name_file_and_reason(tmp_path, text, words):
    (tmp_path / "brand.yaml").write_text(text)
    with pytest.raises(BrandConfigError) as info:
        load_brand(tmp_path)
    assert "brand.yaml" in str(info.value) and words in str(info.value)


def test_a_brand_calendar_is_relative_to_the_data_directory(tmp_path):
    (tmp_path / "festivals.yaml").write_text('festivals:\n  - {name: brand_day, date: "09-09"}\n')
    (tmp_path / "brand.yaml").write_text("calendar: festivals.yaml\n")
    assert load_brand(tmp_path).calendar == tmp_path / "festivals.yaml"
    assert load_brand(tmp_path / "..").calendar is None


def test_brand_id_rules():
    assert check_brand_id("acme-2_b") == "acme-2_b"
    for bad in ("", "-x", "a/b", "x" * 65, "a.b"):
        with pytest.raises(BrandConfigError):
            check_brand_id(bad)
