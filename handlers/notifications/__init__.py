"""Notification automation: tells the manager their new report is set up."""
