-- Runs once when the compose PostgreSQL volume is created.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE ROLE sparki_monitor LOGIN PASSWORD 'monitor-demo' IN ROLE pg_monitor;
