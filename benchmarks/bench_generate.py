"""Generation benchmark: `python benchmarks/bench_generate.py [--paths ...]`.

Same as `slmchat bench`; see slmchat/bench.py for what is measured.
"""

from __future__ import annotations

import sys

from slmchat.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
