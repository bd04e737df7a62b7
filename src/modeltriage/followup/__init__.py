"""What follows a decision: answer checks, failover, model health. Imports ``core`` and
``log``."""
