"""Payroll automation: creates the payroll record of a new employee (not contractors)."""
