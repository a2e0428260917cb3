"""Type name -> message model: how a record's ``ce_type`` becomes a Python class.

Every concrete :class:`~bus.message.Message` subclass registers itself in
:data:`default_registry` when its class is created, so importing a contracts module is
enough. A separate :class:`Registry` can be built for isolation (tests, tools).

Example::

    model = default_registry.model_for("hr.employee.hired.v1")
    schemas = default_registry.json_schemas()
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from bus.errors import RegistryError, UnknownTypeError

if TYPE_CHECKING:
    from bus.message import Message

__all__ = ["Registry", "default_registry"]


class Registry:
    """A mapping from CloudEvents type names to message models."""

    def __init__(self, models: Iterable[type[Message]] = ()) -> None:
        self._models: dict[str, type[Message]] = {}
        for model in models:
            self.register(model)

    def register(self, model: type[Message]) -> type[Message]:
        """Add ``model`` under its type name; a different class with that name is an error."""
        name = model.bus_type
        existing = self._models.get(name)
        if (
            existing is not None
            and existing is not model
            and _identity(existing) != _identity(model)
        ):
            raise RegistryError(
                f"type {name!r} is claimed by both {_identity(existing)} and {_identity(model)}; "
                "give one of them another type name (bump the version suffix for a new shape)"
            )
        self._models[name] = model
        return model

    def model_for(self, type_name: str) -> type[Message]:
        """The model registered for ``type_name``; :class:`UnknownTypeError` if none."""
        try:
            return self._models[type_name]
        except KeyError:
            raise UnknownTypeError(
                f"no message model is registered for type {type_name!r}; import the module "
                "that defines it (known: " + ", ".join(sorted(self._models)) + ")"
            ) from None

    def get(self, type_name: str) -> type[Message] | None:
        return self._models.get(type_name)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._models

    def __iter__(self) -> Iterator[type[Message]]:
        return iter(sorted(self._models.values(), key=lambda m: m.bus_type))

    def __len__(self) -> int:
        return len(self._models)

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """JSON Schema of every registered type, keyed by type name (sorted)."""
        return {model.bus_type: model.bus_json_schema() for model in self}


def _identity(model: type[Message]) -> str:
    return f"{model.__module__}.{model.__qualname__}"


#: Where message classes register themselves when they are defined.
default_registry = Registry()
