"""asv benchmark suites for skbn (see asv.conf.json at the repository root)."""
