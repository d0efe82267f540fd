"""The database: its connection and write turn (db), call records (records), history queries (history)."""
