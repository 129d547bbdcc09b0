"""Rendering report data through Jinja2 templates (autoescaped); a user folder may override."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from rolecall.reports.errors import ReportInputError
from rolecall.reports.model import ReportData

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
REPORT_TEMPLATE = "report.html.j2"
EMAIL_TEMPLATE = "email.html.j2"
FRACTION = re.compile(r"(\d\d:\d\d:\d\d)\.\d+Z")


def to_the_second(iso_time: str) -> str:
    """An ISO time as the report shows it: to the second, in UTC ("2026-05-04 10:20:30Z")."""
    day, _, clock = iso_time.partition("T")
    if not clock:
        return iso_time
    return f"{day} {clock[:8]}Z"


def seconds_in(text: str) -> str:
    """A text with every ISO time in it cut to the second ("12:00:00.250000Z" -> "12:00:00Z")."""
    return FRACTION.sub(r"\1Z", text)


def environment(template_dir: Path | None = None) -> jinja2.Environment:
    """A Jinja2 environment: the user's folder first, then the built-in templates."""
    folders = [BUILTIN_TEMPLATES]
    if template_dir is not None:
        if not template_dir.is_dir():
            raise ReportInputError(f"report.template_dir {template_dir} is not a directory")
        folders.insert(0, template_dir)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(folder) for folder in folders]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["second"] = to_the_second
    env.filters["seconds_in"] = seconds_in
    return env


def render(report: ReportData, name: str, template_dir: Path | None = None) -> str:
    """Render one template with the report; a broken user template is one sentence."""
    try:
        template = environment(template_dir).get_template(name)
        return template.render(report=report)
    except jinja2.TemplateSyntaxError as exc:
        raise ReportInputError(
            f"template {exc.filename or exc.name}:{exc.lineno}: {exc.message}"
        ) from None
    except jinja2.TemplateError as exc:
        raise ReportInputError(f"template {name}: {exc.message or type(exc).__name__}") from None
