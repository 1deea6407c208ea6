"""The REST API: spreads and the deck to choose from, readings to create, follow and read."""
