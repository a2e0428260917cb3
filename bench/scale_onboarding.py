"""The five handler apps the onboarding saga commands, for ``bench/scale.py``'s
``bus run bench.scale_onboarding:apps`` process: the real handlers of ``handlers/`` on
their simulated systems (:class:`sagas.demo.Systems`, in memory), with seat pools large
enough for any number of hires (the licensing system's default 1,000 office seats would
refuse the 1,001st hire and make its saga compensate)."""

from __future__ import annotations

from sagas.demo import Systems

systems = Systems()
systems.licenses.seats = dict.fromkeys(systems.licenses.seats, 10**9)
apps = systems.apps()
