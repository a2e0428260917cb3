"""A simulated mail gateway: an outbox of sent messages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Mailer:
    sent: list[tuple[str, str]] = field(default_factory=list)

    def send(self, to: str, text: str) -> None:
        self.sent.append((to, text))
