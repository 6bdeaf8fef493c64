"""The database: tables and their states, the SQL that differs per database, migrations."""
