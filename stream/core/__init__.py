"""The pure nurture core: the whole behaviour, no I/O.

- :mod:`stream.core.model` — input/output types (Event, TimerFired, Timer, Transition, Action).
- :mod:`stream.core.engine` — ``step(state, input, config) -> StepResult``.
- :mod:`stream.core.state` — ``LeadState`` and its byte codec (``encode_state``/``decode_state``).
- :mod:`stream.core.config` — ``RulesConfig``, ``load_config`` (``rules.yaml``), ``ConfigError``.
- :mod:`stream.core.programs` — the four programs; :mod:`stream.core.emails` — suppression,
  holdout and frequency cap; :mod:`stream.core.facts` — score, signals, engagement, usage.
- :mod:`stream.core.synth` — a seeded synthetic stream and a replay-style driver.
"""
