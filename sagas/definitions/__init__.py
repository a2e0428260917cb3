"""The saga definitions shipped with bus (the onboarding reference saga)."""
