"""Optional integrations with training frameworks; each module imports its framework only when it is imported."""
