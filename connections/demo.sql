-- The demo data set of `make run`: a few schemas and tables of varied types.
CREATE SCHEMA IF NOT EXISTS sales;
CREATE SCHEMA IF NOT EXISTS inventory;
CREATE SCHEMA IF NOT EXISTS hr;

DO $$ BEGIN
  CREATE TYPE sales.order_state AS ENUM ('new', 'paid', 'shipped', 'returned');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE TABLE IF NOT EXISTS sales.customers (
  id integer PRIMARY KEY,
  name text NOT NULL,
  email varchar(120),
  country char(2),
  signed_up date NOT NULL,
  vip boolean NOT NULL DEFAULT false,
  preferences jsonb
);
INSERT INTO sales.customers
SELECT i, 'Customer ' || i, 'customer' || i || '@example.test',
       (ARRAY['FR','DE','US','JP','BR'])[1 + i % 5],
       date '2015-01-01' + (i % 3000), i % 17 = 0,
       jsonb_build_object('newsletter', i % 2 = 0, 'tags', jsonb_build_array('t' || i % 7))
FROM generate_series(1, 5000) AS i
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS sales.orders (
  id bigint PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES sales.customers(id),
  state sales.order_state NOT NULL,
  amount numeric(12,2) NOT NULL,
  discount numeric,
  ordered_at timestamptz NOT NULL,
  shipped_at timestamp,
  delivery_window interval,
  tracking uuid,
  note text
);
INSERT INTO sales.orders
SELECT i, 1 + i % 5000, (ARRAY['new','paid','shipped','returned'])[1 + i % 4]::sales.order_state,
       round((random() * 1000)::numeric, 2), CASE WHEN i % 9 = 0 THEN 0.125 END,
       timestamptz '2024-01-01 00:00+00' + i * interval '7 minutes',
       CASE WHEN i % 3 = 0 THEN timestamp '2024-01-02' + i * interval '7 minutes' END,
       CASE WHEN i % 3 = 0 THEN interval '2 days 3 hours' END,
       md5(i::text)::uuid, CASE WHEN i % 11 = 0 THEN 'fragile: ''handle'' with care' END
FROM generate_series(1, 50000) AS i
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS inventory.products (
  sku text PRIMARY KEY,
  title text NOT NULL,
  price money,
  weight_kg real,
  dimensions double precision[],
  photo bytea,
  tags text[]
);
INSERT INTO inventory.products
SELECT 'SKU-' || lpad(i::text, 6, '0'), 'Product ' || i, (i * 1.5)::numeric::money, i / 7.0,
       ARRAY[i, i / 2.0, i / 3.0], decode(md5(i::text), 'hex'), ARRAY['a' || i % 3, 'b']
FROM generate_series(1, 2000) AS i
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS inventory.warehouses (
  id smallint PRIMARY KEY,
  city text NOT NULL,
  address inet,
  opened time,
  active_days int4range
);
INSERT INTO inventory.warehouses VALUES
  (1, 'Lyon', '10.0.0.1', '08:00', '[1,6)'),
  (2, 'Osaka', '10.0.0.2', '07:30', '[1,8)'),
  (3, 'Recife', NULL, NULL, NULL)
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS hr.employees (
  id serial PRIMARY KEY,
  full_name text NOT NULL,
  hired date NOT NULL,
  salary numeric(10,2),
  manager_id integer
);
INSERT INTO hr.employees (id, full_name, hired, salary, manager_id)
SELECT i, 'Employee ' || i, date '2010-01-01' + i * 3, 30000 + i * 10, NULLIF(i / 10, 0)
FROM generate_series(1, 300) AS i
ON CONFLICT DO NOTHING;

CREATE OR REPLACE VIEW sales.order_totals AS
  SELECT customer_id, count(*) AS orders, sum(amount) AS total FROM sales.orders GROUP BY customer_id;

ANALYZE;
