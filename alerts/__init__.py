"""Policies, the alert state machine, silences and notifiers (Slack, webhook)."""
