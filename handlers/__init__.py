"""Automation: standalone handlers, one package per automated system.

Each package has ``contracts.py`` (the messages it consumes and emits: its published
language), ``system.py`` (the simulated target system, which records effects and can be
told to fail) and ``handler.py`` (the App). They use only bus's public API.
"""
