"""The saga definitions shipped with bus (:mod:`sagas.definitions.shipped` lists them)."""
