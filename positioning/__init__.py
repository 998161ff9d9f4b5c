"""Product-positioning interviews, scoring and briefs (see the positioning issue)."""
