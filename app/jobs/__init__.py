"""Background work: the job runner and the job bodies (import, train)."""
