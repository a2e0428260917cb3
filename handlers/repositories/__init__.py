"""Code hosting automation: grants and revokes engineers' repository access."""
