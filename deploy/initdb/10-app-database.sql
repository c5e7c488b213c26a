-- The app database beside Dagster's own (docker-compose trial only).
CREATE DATABASE moodle OWNER dagster;
