"""Transports: one protocol (``base``), two implementations (``memory``, ``kafka``)."""
