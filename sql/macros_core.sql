-- Table macros over the core layer. DuckDB binds a table macro's tables when it is
-- created, so these are installed by pipelines/sqlrun.py when a step first calls one,
-- after core exists (sql/macros.sql is installed before staging); they are temporary,
-- per connection, so that a copy of the database never carries them.
-- The customers known on or before as_of: they ordered (any status) by then, or their
-- master record was signed up by then (one without a sign-up date counts as known). The
-- one definition of "customers" as of a run: the rows of marts.customer_360, the count in
-- marts.data_quality, the run summary and the report.
create or replace temp macro known_customers(as_of) as table
    select c.customer_id
    from core.customers c
    where c.customer_id in (select customer_id from core.transactions where order_date <= as_of)
       or (c.is_in_customer_master and coalesce(c.signup_at::date, as_of) <= as_of);
