"""``python -m bus.ingress hash TOKEN``: the ``sha256`` line a token file stores.

Example::

    $ python -m bus.ingress hash s3cret
    sha256 = "..."
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bus.ingress.tokens import hash_token


def main(argv: Sequence[str]) -> int:
    """Print the token file line for ``hash TOKEN``; 2 and a usage line otherwise."""
    if len(argv) != 2 or argv[0] != "hash":
        print("usage: python -m bus.ingress hash TOKEN", file=sys.stderr)
        return 2
    print(f'sha256 = "{hash_token(argv[1])}"')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
