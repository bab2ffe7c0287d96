"""Rollups: counts kept per jurisdiction cell by database triggers, in the transaction of every write, so pages read
a few hundred rows instead of scanning the registry, the devices, the captures and the warnings (issue 20)."""
