"""Bad input, generated reproducibly: garbage records and valid controls for ``fuzz_app``.

Each *kind* is a function of a seeded :class:`random.Random` that returns a
:class:`Sample` (key, value, headers, and whether it is a valid control). The same kinds
feed the broker run (:func:`corpus`, 100,000 records from one seed) and, as a hypothesis
strategy (:func:`samples`), the in-process property test, where hypothesis picks the kind
and the seed and shrinks a failure to one record.

The invalid kinds: random bytes; truncated JSON; wrong JSON types; huge strings; missing,
duplicated, non-UTF-8 or empty ``ce_*`` headers; ``ce_specversion`` 0.9 and other
versions; binary mode without ``ce_id``; unknown types and wrong type versions; a
structured record with the batch content type; the invalid events of the CloudEvents JSON
format (missing or non-string required attributes, both ``data`` and ``data_base64``, bad
base64, bad time, nested attribute values, bad attribute names, not an object, not JSON).
Controls are valid binary- or structured-mode ``Ping`` events, some with extra odd
(duplicated, non-UTF-8) headers that are not CloudEvents attributes.
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import orjson
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.fuzz.fuzz_app import PING_TYPE, Ping

Headers = tuple[tuple[str, bytes], ...]


class Sample(NamedTuple):
    kind: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    valid: bool


def _text(rng: random.Random, low: int = 1, high: int = 12) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(low, high)))


def _payload(rng: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {"key": f"k-{rng.randrange(1000)}", "n": rng.randrange(-(10**6), 10**6)}
    if rng.random() < 0.5:
        doc["note"] = _text(rng, 0, 40)
    return doc


def _ce(rng: random.Random, type_: str = PING_TYPE) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"{rng.getrandbits(64):016x}".encode()),
        ("ce_source", b"bus://fuzz"),
        ("ce_type", type_.encode()),
        ("content-type", b"application/json"),
    ]


def _binary(kind: str, rng: random.Random, value: bytes | None, *, valid: bool = False) -> Sample:
    return Sample(kind, f"k-{rng.randrange(1000)}".encode(), value, tuple(_ce(rng)), valid)


def _is_invalid_ping(value: bytes) -> bool:
    try:
        Ping.model_validate_json(value)
    except ValidationError:
        return True
    return False


# -- the controls -----------------------------------------------------------------------
def control(rng: random.Random) -> Sample:
    payload = _payload(rng)
    if rng.random() < 0.2:  # structured mode
        event = {
            "specversion": "1.0",
            "id": f"{rng.getrandbits(64):016x}",
            "source": "bus://fuzz",
            "type": PING_TYPE,
            "datacontenttype": "application/json",
            "data": payload,
        }
        headers: Headers = (("content-type", b"application/cloudevents+json; charset=utf-8"),)
        return Sample("control", None, orjson.dumps(event), headers, True)
    sample = _binary("control", rng, orjson.dumps(payload), valid=True)
    if rng.random() < 0.3:  # odd headers that are not CloudEvents attributes are fine
        odd = [("x-trace", b"1"), ("x-trace", b"2"), ("x-bin", bytes([0xFF, 0xFE, 0x00]))]
        sample = sample._replace(headers=(*sample.headers, *rng.sample(odd, rng.randint(1, 3))))
    return sample


# -- the invalid kinds ------------------------------------------------------------------
def random_bytes(rng: random.Random) -> Sample:
    # key or value: aiokafka refuses a record with neither
    headers = tuple(
        (_text(rng), rng.randbytes(rng.randint(0, 20))) for _ in range(rng.randint(0, 3))
    )
    value = rng.randbytes(rng.randint(0, 2000)) if rng.random() < 0.95 else None
    key = rng.randbytes(rng.randint(0, 16)) if rng.random() < 0.7 or value is None else None
    return Sample("random_bytes", key, value, headers, False)


def truncated_json(rng: random.Random) -> Sample:
    full = orjson.dumps(_payload(rng))
    return _binary("truncated_json", rng, full[: rng.randint(0, len(full) - 1)])


_WRONG: list[Any] = ["abc", "", 1.5, [1], {"n": 1}, None, "1e999", 2**63 - 1, -(2**63), [], {}]


def wrong_types(rng: random.Random) -> Sample:
    while True:
        doc = _payload(rng)
        field = rng.choice(["key", "n", "note", "extra"])
        if field == "extra":
            doc = rng.choice([[doc], "a string", 42, None, True])  # not an object at all
        else:
            doc[field] = rng.choice([*_WRONG, 7, True, False])
            if rng.random() < 0.3:
                del doc["key" if field != "key" else "n"]  # and a required field missing
        value = orjson.dumps(doc)
        if _is_invalid_ping(value):
            return _binary("wrong_types", rng, value)


def huge_strings(rng: random.Random) -> Sample:
    size = rng.randint(10_000, 300_000)
    where = rng.choice(["key", "note", "n", "header"])
    doc = _payload(rng)
    if where == "header":  # a huge type name: unknown
        sample = _binary("huge_strings", rng, orjson.dumps(doc))
        headers = [(k, v) for k, v in sample.headers if k != "ce_type"]
        return sample._replace(headers=(*headers, ("ce_type", b"t" * size)))
    doc[where] = "x" * size
    return _binary("huge_strings", rng, orjson.dumps(doc))


_REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type")


def missing_ce(rng: random.Random) -> Sample:
    sample = _binary("missing_ce", rng, orjson.dumps(_payload(rng)))
    gone = set(rng.sample(_REQUIRED, rng.randint(1, 4)))
    return sample._replace(headers=tuple(h for h in sample.headers if h[0] not in gone))


def no_ce_id(rng: random.Random) -> Sample:
    sample = _binary("no_ce_id", rng, orjson.dumps(_payload(rng)))
    return sample._replace(headers=tuple(h for h in sample.headers if h[0] != "ce_id"))


def duplicated_ce(rng: random.Random) -> Sample:
    sample = _binary("duplicated_ce", rng, orjson.dumps(_payload(rng)))
    name = rng.choice([*_REQUIRED, "content-type", "ce_time", "ce_subject"])
    value = dict(sample.headers).get(name, b"2026-01-01T00:00:00Z")
    again = value if rng.random() < 0.5 else _text(rng).encode()
    headers = [*sample.headers, (name, again)]
    if name not in dict(sample.headers):
        headers.append((name, again))
    rng.shuffle(headers)
    return sample._replace(headers=tuple(headers))


def empty_ce(rng: random.Random) -> Sample:
    sample = _binary("empty_ce", rng, orjson.dumps(_payload(rng)))
    name = rng.choice(_REQUIRED)
    return sample._replace(headers=tuple((k, b"" if k == name else v) for k, v in sample.headers))


def non_utf8_ce(rng: random.Random) -> Sample:
    sample = _binary("non_utf8_ce", rng, orjson.dumps(_payload(rng)))
    name = rng.choice([*_REQUIRED, "ce_correlationid"])
    bad = b"\xc3\x28" + rng.randbytes(rng.randint(0, 6))
    headers = [(k, v) for k, v in sample.headers if k != name]
    return sample._replace(headers=(*headers, (name, bad)))


def wrong_specversion(rng: random.Random) -> Sample:
    sample = _binary("wrong_specversion", rng, orjson.dumps(_payload(rng)))
    version = rng.choice([b"0.9", b"0.3", b"2.0", b"1", b"1.0.0", b"1.0 ", b"v1.0"])
    return sample._replace(
        headers=tuple((k, version if k == "ce_specversion" else v) for k, v in sample.headers)
    )


def unknown_type(rng: random.Random) -> Sample:
    type_ = rng.choice(
        [
            f"it.fuzz.unknown.{_text(rng)}.v1",
            "it.fuzz.ping.v2",  # a wrong version of the handled type
            "it.fuzz.ping.v0",
            "it.fuzz.ping",
            "IT.FUZZ.PING.V1",
            PING_TYPE + " ",
        ]
    )
    sample = _binary("unknown_type", rng, orjson.dumps(_payload(rng)))
    return sample._replace(
        headers=tuple((k, type_.encode() if k == "ce_type" else v) for k, v in sample.headers)
    )


def not_json(rng: random.Random) -> Sample:
    value = rng.choice(
        [b"", None, b"\xff\xfe", b"[" * 5000, b'{"key": "k", "n": 1}}', b"NaN", rng.randbytes(50)]
    )
    return _binary("not_json", rng, value)


def batch(rng: random.Random) -> Sample:
    events = [
        {
            "specversion": "1.0",
            "id": str(i),
            "source": "s",
            "type": PING_TYPE,
            "data": _payload(rng),
        }
        for i in range(rng.randint(0, 3))
    ]
    headers: Headers = (("content-type", b"application/cloudevents-batch+json"),)
    return Sample("batch", None, orjson.dumps(events), headers, False)


def _structured_invalid_events(rng: random.Random) -> list[Any]:
    def good() -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": _text(rng),
            "source": "bus://fuzz",
            "type": PING_TYPE,
            "data": _payload(rng),
        }

    def without(name: str) -> dict[str, Any]:
        event = good()
        del event[name]
        return event

    def with_(**attrs: Any) -> dict[str, Any]:
        return {**good(), **attrs}

    return [
        without("specversion"),
        without("id"),
        without("source"),
        without("type"),
        with_(specversion="0.3"),
        with_(specversion=1.0),
        with_(id=42),
        with_(id=""),
        with_(source=["s"]),
        with_(type={"name": PING_TYPE}),
        with_(time="yesterday"),
        with_(time="2026-13-01T00:00:00Z"),
        with_(time=1_700_000_000),
        with_(data_base64="!!not base64!!"),
        with_(data_base64=base64.b64encode(b"{}").decode()),  # both data and data_base64
        with_(myext={"nested": True}),
        with_(**{"Bad-Name": "x"}),
        with_(**{"ext_1": "x"}),
        with_(data="a string, not a ping"),
        [good()],
        "an event",
        17,
        None,
    ]


def structured_invalid(rng: random.Random) -> Sample:
    event = rng.choice(_structured_invalid_events(rng))
    value = orjson.dumps(event)
    if rng.random() < 0.1:
        value = value[: rng.randint(0, max(0, len(value) - 1))]  # and not even JSON
    content_type = rng.choice(
        [b"application/cloudevents+json", b"application/cloudevents+json; charset=utf-8"]
    )
    return Sample("structured_invalid", None, value, (("content-type", content_type),), False)


def structured_unsupported(rng: random.Random) -> Sample:
    content_type = rng.choice([b"application/cloudevents+xml", b"application/cloudevents+avro"])
    return Sample("structured_invalid", None, b"<event/>", (("content-type", content_type),), False)


#: (kind, weight): how often each kind appears among the invalid records.
INVALID_KINDS: list[tuple[Callable[[random.Random], Sample], int]] = [
    (random_bytes, 14),
    (truncated_json, 10),
    (wrong_types, 12),
    (huge_strings, 1),
    (missing_ce, 8),
    (no_ce_id, 5),
    (duplicated_ce, 8),
    (empty_ce, 4),
    (non_utf8_ce, 6),
    (wrong_specversion, 6),
    (unknown_type, 8),
    (not_json, 6),
    (batch, 4),
    (structured_invalid, 10),
    (structured_unsupported, 1),
]
KINDS = {f.__name__: f for f, _ in INVALID_KINDS} | {"control": control}


def corpus(seed: int, invalid: int, controls: int) -> Iterator[Sample]:
    """``invalid`` garbage records with ``controls`` valid ones spread evenly among them."""
    rng = random.Random(seed)
    kinds = [f for f, _ in INVALID_KINDS]
    weights = [w for _, w in INVALID_KINDS]
    every = max(1, invalid // max(1, controls))
    made = 0
    for i in range(invalid):
        if made < controls and i % every == 0:
            yield control(rng)
            made += 1
        yield rng.choices(kinds, weights)[0](rng)
    for _ in range(controls - made):
        yield control(rng)


def samples() -> st.SearchStrategy[Sample]:
    """Any kind, from a seed hypothesis chooses (and shrinks)."""
    return st.builds(
        lambda kind, seed: KINDS[kind](random.Random(seed)),
        st.sampled_from(sorted(KINDS)),
        st.integers(0, 2**32),
    )


def arbitrary_records() -> st.SearchStrategy[Sample]:
    """Headers and values hypothesis makes up from scratch, ``ce_*`` names included."""
    names = st.sampled_from([*_REQUIRED, "ce_time", "content-type", "CE_TYPE", "x"]) | st.text(
        max_size=8
    )
    values = st.binary(max_size=30) | st.sampled_from(
        [b"1.0", PING_TYPE.encode(), b"application/cloudevents+json", b"2026-01-01T00:00:00Z"]
    )
    return st.builds(
        lambda headers, value: Sample("arbitrary", None, value, tuple(headers), False),
        st.lists(st.tuples(names, values), max_size=8),
        st.binary(max_size=200) | st.none(),
    )
