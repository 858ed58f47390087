"""Every experiment spec shipped under experiments/ validates as the README runs it (a spec that drifts
from the schema or names a card that is gone fails here, not in a user's first run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdro.cli import main

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "experiments").rglob("*.yaml"))


def test_the_shipped_specs_are_found() -> None:
    names = {p.name for p in SPECS}
    assert names >= {"demo.yaml", "real.yaml", "real-decoder.yaml", "real-multilingual.yaml"}, names


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_spec_validates(spec: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    assert main(["validate", str(spec.relative_to(REPO)), "--skip-data-check", "--no-show-spec"]) == 0, \
        capsys.readouterr()
    assert "valid" in capsys.readouterr().out
