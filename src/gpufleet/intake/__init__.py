"""Job intake: manifests that land in an inbox become jobs, with no human involved."""
