"""LICENSE and CITATION.cff agree with pyproject.toml (licence, version) and CITATION.cff is valid YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

import cbp

ROOT = Path(__file__).resolve().parents[1]


def test_citation_cff_parses_and_matches_the_package() -> None:
    yaml = pytest.importorskip("yaml")
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["cff-version"] == "1.2.0"
    assert {"authors", "message", "title"} <= cff.keys()  # CFF 1.2.0's required keys
    assert cff["title"] == project["name"] == "cbp"
    assert cff["version"] == project["version"] == cbp.__version__
    assert cff["license"] == project["license"]["text"] == "MIT"
    paper = cff["preferred-citation"]
    assert {"authors", "title", "type"} <= paper.keys()
    assert paper["doi"] == "10.1016/j.patcog.2024.110431" and paper["year"] == 2024


def test_license_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the cbp authors" in text
