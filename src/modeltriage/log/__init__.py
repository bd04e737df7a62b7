"""The decision log: entries, stores (memory, SQLite, PostgreSQL) with versioned
migrations, the background writer and reports. Imports ``core`` and ``errors`` only."""
