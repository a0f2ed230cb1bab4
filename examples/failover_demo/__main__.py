"""``python -m examples.failover_demo``: see the package docstring."""

from __future__ import annotations

from examples.failover_demo import main

raise SystemExit(main())
