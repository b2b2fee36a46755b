"""The internal push: one accepted application becomes every department's task, in order."""
