"""Webhooks: `/webhooks` (alias `/hooks`) subscriptions, their delivery log, and delivery."""
