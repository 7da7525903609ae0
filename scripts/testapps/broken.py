"""A fixture app that fails to import."""

import json  # noqa: F401

raise RuntimeError('broken on purpose at import')
