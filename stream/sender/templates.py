"""Email templates: one Jinja2 file per ``template`` name the rules emit.

The names come from the rules file (:func:`template_names`), never a hand list, so a rule that
gains a template fails the sender's start-up until its file exists. A ``*_prefix`` family (e.g.
``adoption.nudge``) is one file serving every name built from it (``adoption.nudge.reports``).
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


def _walk(node: Any, key: str = "", under_templates: bool = False) -> Iterator[tuple[str, str]]:
    """(kind, name) of every template name in the rules: ``exact`` or a ``prefix`` family."""
    if isinstance(node, Mapping):
        for k, value in node.items():
            yield from _walk(value, str(k), under_templates or k == "templates")
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _walk(value, key, under_templates)
    elif isinstance(node, str):
        if under_templates or key == "template" or key.endswith("_task"):
            yield ("exact", node)
        elif key.endswith("_prefix"):
            yield ("prefix", node)


def template_names(rules: RulesConfig) -> tuple[str, ...]:
    """Every template file the rules need, sorted, once each: the names under ``templates``
    sections and ``template`` / ``*_task`` keys, and each ``*_prefix`` family (its file serves
    every ``<prefix>.<suffix>`` name the rules build from it)."""
    return tuple(sorted({name for _kind, name in _walk(rules.model_dump(mode="python"))}))


def template_families(rules: RulesConfig) -> tuple[str, ...]:
    """The ``*_prefix`` families, longest first."""
    found = {name for kind, name in _walk(rules.model_dump(mode="python")) if kind == "prefix"}
    return tuple(sorted(found, key=len, reverse=True))


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
        self.families = template_families(rules)
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
            family = next((f for f in self.families if name.startswith(f + ".")), None)
            template = self._compiled.get(family) if family else None
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
