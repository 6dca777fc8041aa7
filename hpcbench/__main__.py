"""``python -m hpcbench``."""

from __future__ import annotations

from hpcbench.cli import main

raise SystemExit(main())
