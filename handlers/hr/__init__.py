"""The HR system of record: upstream of onboarding. It publishes; it has no handler."""
