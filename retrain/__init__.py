"""Retraining webhooks through the outbox, signing, retries and pipeline callbacks."""
