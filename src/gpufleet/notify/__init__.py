"""Completion notifications: webhooks and SNS topics told when jobs are created, progress
and finish, through an outbox in the index and a dispatcher that retries (issue 17)."""
