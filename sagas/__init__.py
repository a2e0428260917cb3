"""Orchestration: saga definitions, the pure transition core, the coordinator and stores.

Empty until the saga issue lands; it will use only bus's public API.
"""
