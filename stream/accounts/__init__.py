"""Post-sale accounts: a pure core (``step_account``) for account state, health and plays.

No imports here: :mod:`stream.core.config` imports :mod:`stream.accounts.config`.
"""
