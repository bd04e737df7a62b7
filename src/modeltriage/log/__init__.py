"""The decision log: entries, the store contract and its stores (memory, SQLite,
PostgreSQL) with versioned migrations, the background writer and reports. Imports
``core`` and ``errors`` only."""
