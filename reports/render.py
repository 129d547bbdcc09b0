"""Rendering report data through Jinja2 templates (autoescaped); a user folder may override."""

from __future__ import annotations

from pathlib import Path

import jinja2

from rolecall.reports.errors import ReportInputError
from rolecall.reports.model import ReportData

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
REPORT_TEMPLATE = "report.html.j2"
EMAIL_TEMPLATE = "email.html.j2"


def environment(template_dir: Path | None = None) -> jinja2.Environment:
    """A Jinja2 environment: the user's folder first, then the built-in templates."""
    folders = [BUILTIN_TEMPLATES]
    if template_dir is not None:
        if not template_dir.is_dir():
            raise ReportInputError(f"report.template_dir {template_dir} is not a directory")
        folders.insert(0, template_dir)
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(folder) for folder in folders]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


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
