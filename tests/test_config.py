"""The settings tree: strict parsing, one default each, and docs/settings.md generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacpipe.config import HeartMethod, Settings, settings_markdown
from cacpipe.errors import ConfigError


def test_docs_settings_md_is_generated_from_the_tree():
    doc = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
    assert doc.read_text() == settings_markdown(), "regenerate: python -m cacpipe.config > docs/settings.md"


def test_round_trip_and_merge():
    s = Settings().merged({"heart": {"method": "fallback"}, "segment": {"folds": [0, 2]}, "device": "cuda:1"})
    assert s.heart.method is HeartMethod.FALLBACK and s.segment.folds == (0, 2) and s.device == "cuda:1"
    assert Settings.from_dict(s.to_dict()) == s
    assert s.merged({}) == s and Settings().to_dict() == Settings.from_dict({}).to_dict()


@pytest.mark.parametrize("bad,where", [
    ({"heart": {"methd": "auto"}}, "valid keys"),
    ({"nonsense": 1}, "valid keys"),
    ({"segment": {"folds": "0,1"}}, "expected a list"),
    ({"segment": {"tile_step_size": 0}}, "tile_step_size"),
    ({"selection": {"min_slices": 2.5}}, "whole number"),
    ({"review": {"fields": ["ssn"]}}, "unknown field"),
    ({"device": "gpu"}, "device"),
    ({"heart": "fallback"}, "mapping"),
])
def test_unknown_keys_and_wrong_types_are_refused(bad, where):
    with pytest.raises(ConfigError, match=where):
        Settings().merged(bad)
