"""Email templates: one Jinja2 file per ``template`` name the rules emit.

The names come from the rules file (every ``templates`` entry of :class:`RulesConfig`), never a
hand list, so a rule that gains a template fails the sender's start-up until its file exists.
A template file ``<name>.txt.j2`` sets ``subject`` and renders the body::

    {% set subject = "Welcome to your trial" %}
    Hi {{ lead_id }}, ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from stream.core.config import RulesConfig

BUILTIN_DIR = Path(__file__).resolve().parent / "templates"
SUFFIX = ".txt.j2"


class TemplateError(RuntimeError):
    """A template is missing or does not render."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    body: str


def _walk(node: Any, under_templates: bool = False) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, under_templates or key == "templates")
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _walk(value, under_templates)
    elif under_templates and isinstance(node, str):
        yield node


def template_names(rules: RulesConfig) -> tuple[str, ...]:
    """Every template name of the rules (each ``templates`` section), sorted, once each."""
    return tuple(sorted(set(_walk(rules.model_dump(mode="python")))))


class Templates:
    """The rules' templates, loaded and checked at start-up."""

    def __init__(self, rules: RulesConfig, folder: Path | None = None) -> None:
        self.folder = folder or BUILTIN_DIR
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.folder)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain-text mail
            keep_trailing_newline=True,
        )
        self.names = template_names(rules)
        missing = [n for n in self.names if not (self.folder / f"{n}{SUFFIX}").is_file()]
        if missing:
            raise TemplateError(
                f"missing email template(s) in {self.folder}: "
                + ", ".join(f"{n}{SUFFIX}" for n in missing)
                + " (one per template name in the rules file; add them, or point "
                "NURTURE_SENDER_TEMPLATES_DIR at a folder that has them)"
            )
        self._compiled = {n: self.env.get_template(f"{n}{SUFFIX}") for n in self.names}

    def render(self, name: str, action: Mapping[str, Any]) -> RenderedEmail:
        template = self._compiled.get(name)
        if template is None:
            raise TemplateError(f"unknown template {name!r} (not in the rules file)")
        variables = dict(action)
        variables.setdefault("context", {})
        try:
            module = template.make_module(variables)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name!r} does not render: {exc}") from exc
        subject = str(getattr(module, "subject", "")).strip()
        if not subject:
            raise TemplateError(f"template {name!r} sets no subject")
        return RenderedEmail(subject=subject, body=str(module).strip() + "\n")
