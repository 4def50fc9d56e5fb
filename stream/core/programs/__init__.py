"""The four nurture programs: entry, in-program rules and exit/handoff, one module each."""
