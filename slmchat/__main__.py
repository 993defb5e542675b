from __future__ import annotations

from slmchat.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
