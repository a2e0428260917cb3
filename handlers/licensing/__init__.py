"""SaaS licensing automation: assigns the department's license set to each new account."""
