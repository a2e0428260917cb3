"""Identity provider automation: creates a directory account for each new hire."""
