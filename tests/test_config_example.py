"""config.example.toml: valid as shipped, and it names every setting rolecall has."""

from __future__ import annotations

import re
import tomllib

from pydantic import BaseModel

from rolecall.orchestrator.config import Config, validate_config
from rolecall.orchestrator.settings import derive_settings
from tests.data_paths import CONFIG_EXAMPLE as EXAMPLE


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


def _written(text: str) -> set[str]:
    """Every "section.key" the example writes, commented out for list-of-table entries."""
    written = set()
    section = ""
    for line in text.splitlines():
        header = re.fullmatch(r"(?:# )?\[\[?([a-z_]+)\]\]?", line)
        key = re.match(r"(?:# )?([a-z_]+) = ", line)
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
