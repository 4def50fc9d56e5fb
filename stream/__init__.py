"""nurture-stream: a real-time behavioural state machine for B2B SaaS nurture."""

__version__ = "0.1.0"
