"""config.example.toml: valid as shipped, and it names every setting rolecall has."""

from __future__ import annotations

import re
import tomllib
import typing

from pydantic import BaseModel

from rolecall.orchestrator.config import Config, validate_config
from rolecall.orchestrator.settings import derive_settings
from tests.data_paths import CONFIG_EXAMPLE as EXAMPLE


def _models(annotation: object) -> list[type[BaseModel]]:
    """The config models an annotation holds: itself, a list's, each of a union's ([[alerts]])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def _settings(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted setting name of a config model, sections and list-of-table entries included."""
    names = []
    for name, field in model.model_fields.items():
        nested = _models(field.annotation)
        for entry in nested:
            names.extend(_settings(entry, f"{prefix}{name}."))
        if not nested:
            names.append(f"{prefix}{name}")
    return names


def test_the_example_config_is_valid_as_shipped() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    validate_config(tomllib.loads(text), str(EXAMPLE))


def _written(text: str) -> set[str]:
    """Every "section.key" the example writes, commented out for list-of-table entries."""
    written = set()
    section = ""
    for line in text.splitlines():
        header = re.fullmatch(r"(?:# )?\[\[?([a-z_.]+)\]\]?", line)
        key = re.match(r"(?:# )?([a-z0-9_]+) = ", line)
        if header:
            section = header.group(1)
        elif key:
            written.add(f"{section}.{key.group(1)}")
    return written


def test_the_example_config_names_every_setting() -> None:
    written = _written(EXAMPLE.read_text(encoding="utf-8"))
    missing = [name for name in _settings(Config) if name not in written]
    assert missing == [], f"config.example.toml does not show these settings: {missing}"


def test_the_commented_list_examples_are_valid_when_uncommented() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    blocks = re.findall(
        r"^# (\[\[(?:schedule|groups|alerts)\]\]\n(?:# [a-z_]+ = .*\n)+)",
        text,
        flags=re.MULTILINE,
    )
    config = validate_config(
        tomllib.loads("\n".join(re.sub(r"^# ", "", b, flags=re.MULTILINE) for b in blocks)),
        str(EXAMPLE),
    )
    assert [entry.id for entry in config.schedule] == [
        "nightly-scan",
        "weekly-v6-scan",
        "branch-east-scan",
        "sensor-drop",
        "eth1-drop",
        "weekly-report",
    ]
    assert [group.name for group in config.groups][:2] == ["dmz", "office"]
    assert derive_settings(config).groups[1].exclude_groups == ("dmz",)
    assert [output.name for output in config.alerts] == [
        "siem-file",
        "soc-mail",
        "siem-syslog",
        "soc-webhook",
    ]
