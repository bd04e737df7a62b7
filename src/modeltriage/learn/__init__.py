"""Offline work on labelled data and logs: evaluation, tuning, outcomes and plans,
clustering, fine-tuning, simulation. Imports the router and below."""
