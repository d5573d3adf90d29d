"""A plugin whose shape rule has a bug, for the tests of RG093 (a located diagnostic, not a traceback)."""
