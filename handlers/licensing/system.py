"""A simulated SaaS license manager with a finite seat pool per product."""

from __future__ import annotations

from dataclasses import dataclass, field


class NoSeatsLeftError(Exception):
    """The product has no free seat: permanent until someone buys more."""


DEPARTMENT_PRODUCTS: dict[str, list[str]] = {
    "engineering": ["office", "chat", "code-hosting"],
    "sales": ["office", "chat", "crm"],
}
DEFAULT_PRODUCTS = ["office", "chat"]


@dataclass
class LicenseManager:
    """Seats by product; ``assigned`` maps email -> products (assignment is idempotent)."""

    seats: dict[str, int] = field(
        default_factory=lambda: {"office": 1000, "chat": 1000, "crm": 100, "code-hosting": 200}
    )
    assigned: dict[str, list[str]] = field(default_factory=dict)

    def assign(self, email: str, department: str) -> list[str]:
        if email in self.assigned:
            return self.assigned[email]
        products = DEPARTMENT_PRODUCTS.get(department.lower(), DEFAULT_PRODUCTS)
        empty = [p for p in products if self.seats.get(p, 0) <= 0]
        if empty:
            raise NoSeatsLeftError(f"no seats left for {', '.join(empty)}")
        for p in products:
            self.seats[p] -= 1
        self.assigned[email] = list(products)
        return list(products)

    def revoke(self, email: str) -> list[str]:
        """Free the seats assigned to ``email``; idempotent (none assigned is fine)."""
        products = self.assigned.pop(email, [])
        for p in products:
            self.seats[p] = self.seats.get(p, 0) + 1
        return products
