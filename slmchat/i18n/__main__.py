"""``python -m slmchat.i18n check [code ...]``: check language files against en.toml.

For translators: one line per problem (a missing id, another placeholder, a broken
file), exit status 1 when there is any; every language file when no code is given.
"""

from __future__ import annotations

import sys

from slmchat.i18n.catalogue import SOURCE, CatalogueError, available, load, problems


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "check":
        print("usage: python -m slmchat.i18n check [code ...]", file=sys.stderr)
        return 2
    codes = argv[1:] or list(available())
    try:
        source = load(SOURCE)
    except CatalogueError as exc:
        print(exc)
        return 1
    found = []
    for code in codes:
        try:
            found += problems(load(code), source)
        except CatalogueError as exc:
            found.append(str(exc))
    for line in found:
        print(line)
    if not found:
        print(f"ok: {', '.join(f'{c}.toml' for c in codes)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
