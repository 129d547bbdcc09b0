"""config.example.toml: valid as shipped, and it names every setting rolecall has."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel

from rolecall.orchestrator.config import Config, validate_config
from rolecall.orchestrator.settings import derive_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def _settings(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted setting name of a config model, sections and list-of-table entries included."""
    names = []
    for name, field in model.model_fields.items():
        inner = field.annotation
        args = getattr(inner, "__args__", ())
        nested = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
        nested = nested or next(
            (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if nested is not None:
            names.extend(_settings(nested, f"{prefix}{name}."))
        else:
            names.append(f"{prefix}{name}")
    return names


def test_the_example_config_is_valid_as_shipped() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    validate_config(tomllib.loads(text), str(EXAMPLE))


def test_the_example_config_names_every_setting() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    # Settings are written "key = value", commented out for list-of-table entries.
    written = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.MULTILINE))
    missing = [name for name in _settings(Config) if name.rsplit(".", 1)[-1] not in written]
    assert missing == []


def test_the_commented_list_examples_are_valid_when_uncommented() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    blocks = re.findall(
        r"^# (\[\[(?:schedule|groups)\]\]\n(?:# [a-z_]+ = .*\n)+)", text, flags=re.MULTILINE
    )
    config = validate_config(
        tomllib.loads("\n".join(re.sub(r"^# ", "", b, flags=re.MULTILINE) for b in blocks)),
        str(EXAMPLE),
    )
    assert [entry.id for entry in config.schedule] == [
        "nightly-scan",
        "sensor-drop",
        "weekly-report",
    ]
    assert [group.name for group in config.groups][:2] == ["dmz", "office"]
    assert derive_settings(config).groups[1].exclude_groups == ("dmz",)
