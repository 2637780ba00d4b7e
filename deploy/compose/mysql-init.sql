-- The exporter's monitoring user (docs/mysql.md): statement latency from
-- performance_schema, InnoDB and replication status.
CREATE USER IF NOT EXISTS 'sparki'@'%' IDENTIFIED BY 'sparki-monitor-demo';
GRANT SELECT ON performance_schema.* TO 'sparki'@'%';
GRANT PROCESS, REPLICA MONITOR, BINLOG MONITOR ON *.* TO 'sparki'@'%';
