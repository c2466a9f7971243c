"""Model families that exist only in the tests, plugged in through SONGSMITH_FAMILY_PLUGINS."""
