-- Benchmark schema: a 100,000-row table, and a parent/child pair for embedding.
CREATE ROLE bench_anon NOLOGIN;
CREATE ROLE bench_authenticator LOGIN NOINHERIT;
GRANT bench_anon TO bench_authenticator;
CREATE SCHEMA api;
CREATE TABLE api.items (
  id integer PRIMARY KEY,
  name text NOT NULL,
  price numeric(10, 2) NOT NULL,
  created_at timestamptz NOT NULL
);
INSERT INTO api.items
  SELECT i, 'item ' || i, (i % 1000) / 10.0, '2024-01-01'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 100000) i;
CREATE TABLE api.parents (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE api.children (id integer PRIMARY KEY, parent_id integer NOT NULL REFERENCES api.parents, name text NOT NULL);
INSERT INTO api.parents SELECT i, 'parent ' || i FROM generate_series(1, 10000) i;
INSERT INTO api.children SELECT i, 1 + i % 10000, 'child ' || i FROM generate_series(1, 50000) i;
CREATE INDEX ON api.children (parent_id);
CREATE TABLE api.bulk (id integer PRIMARY KEY, name text NOT NULL, price numeric(10, 2));
ANALYZE;
GRANT USAGE ON SCHEMA api TO bench_anon;
GRANT SELECT ON ALL TABLES IN SCHEMA api TO bench_anon;
GRANT INSERT ON api.bulk TO bench_anon;
