-- The demo database `pgrest --demo` serves: a small library.
CREATE ROLE web_anon NOLOGIN;
-- The role a token names (`pgrest token --role web_user`): it may also edit the catalogue.
CREATE ROLE web_user NOLOGIN;
CREATE SCHEMA api;
COMMENT ON SCHEMA api IS 'A small library: authors, their books and readers'' reviews.';

CREATE TYPE api.genre AS ENUM ('fiction', 'poetry', 'history', 'science');

CREATE TABLE api.authors (
  id serial PRIMARY KEY,
  name text NOT NULL,
  born date,
  country text
);
COMMENT ON TABLE api.authors IS 'People who wrote books';

CREATE TABLE api.books (
  id serial PRIMARY KEY,
  title text NOT NULL,
  author_id integer NOT NULL REFERENCES api.authors (id),
  genre api.genre NOT NULL,
  published integer,
  pages integer,
  details jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON COLUMN api.books.details IS 'Free-form facts: publisher, awards, ...';

CREATE TABLE api.reviews (
  id serial PRIMARY KEY,
  book_id integer NOT NULL REFERENCES api.books (id),
  reviewer text NOT NULL,
  stars smallint NOT NULL CHECK (stars BETWEEN 1 AND 5),
  body text,
  created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO api.authors (name, born, country) VALUES
  ('Jane Austen', '1775-12-16', 'England'),
  ('Leo Tolstoy', '1828-09-09', 'Russia'),
  ('Emily Dickinson', '1830-12-10', 'United States'),
  ('Mary Beard', '1955-01-01', 'England'),
  ('Carl Sagan', '1934-11-09', 'United States'),
  ('Ada Lovelace', '1815-12-10', 'England');

INSERT INTO api.books (title, author_id, genre, published, pages, details) VALUES
  ('Pride and Prejudice', 1, 'fiction', 1813, 432, '{"publisher": "T. Egerton", "awards": []}'),
  ('Emma', 1, 'fiction', 1815, 474, '{"publisher": "John Murray"}'),
  ('War and Peace', 2, 'fiction', 1869, 1225, '{"publisher": "The Russian Messenger", "volumes": 4}'),
  ('Anna Karenina', 2, 'fiction', 1878, 864, '{"publisher": "The Russian Messenger"}'),
  ('Poems', 3, 'poetry', 1890, 152, '{"publisher": "Roberts Brothers", "posthumous": true}'),
  ('SPQR', 4, 'history', 2015, 608, '{"publisher": "Profile Books", "awards": ["Wolfson History Prize"]}'),
  ('Cosmos', 5, 'science', 1980, 365, '{"publisher": "Random House", "awards": ["Hugo Award"]}'),
  ('Pale Blue Dot', 5, 'science', 1994, 429, '{"publisher": "Random House"}');

INSERT INTO api.reviews (book_id, reviewer, stars, body) VALUES
  (1, 'ana', 5, 'Witty and warm.'),
  (1, 'bo', 4, NULL),
  (3, 'ana', 5, 'Long, worth it.'),
  (7, 'cy', 5, 'Made me look up.'),
  (8, 'bo', 3, 'Good, a bit slow.');

CREATE VIEW api.book_summaries AS
  SELECT b.id, b.title, a.name AS author, b.genre, b.published,
         (SELECT round(avg(r.stars), 2) FROM api.reviews r WHERE r.book_id = b.id) AS average_stars
  FROM api.books b JOIN api.authors a ON a.id = b.author_id;

-- Functions, callable at /rpc/<name>: an immutable one (GET or POST), a stable set of rows
-- that takes the read grammar, and a volatile one (POST only: it writes).
CREATE FUNCTION api.add_them(a integer, b integer) RETURNS integer
  LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;
COMMENT ON FUNCTION api.add_them IS 'Adds two numbers';
CREATE FUNCTION api.books_since(y integer) RETURNS SETOF api.books
  LANGUAGE sql STABLE AS $$ SELECT * FROM api.books WHERE published >= y $$;
COMMENT ON FUNCTION api.books_since IS 'Books published in year y or later';
CREATE FUNCTION api.add_review(book_id integer, reviewer text, stars integer)
  RETURNS api.reviews LANGUAGE sql VOLATILE AS $$
    INSERT INTO api.reviews (book_id, reviewer, stars) VALUES ($1, $2, $3) RETURNING *
  $$;
COMMENT ON FUNCTION api.add_review IS 'Records a review and returns it';

GRANT USAGE ON SCHEMA api TO web_anon;
GRANT SELECT ON ALL TABLES IN SCHEMA api TO web_anon;
-- Visitors may write reviews (and only reviews).
GRANT INSERT, UPDATE, DELETE ON api.reviews TO web_anon;
GRANT USAGE ON SEQUENCE api.reviews_id_seq TO web_anon;
-- Signed-in users (a token with "role": "web_user") may change everything.
GRANT USAGE ON SCHEMA api TO web_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA api TO web_user;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA api TO web_user;
