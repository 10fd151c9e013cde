-- The identity rules, as a table macro: pairs of customer ids that are the same person.
-- sql/core/identity_edges.sql builds core.identity_edges from every record with it; the
-- churn step asks it for the records known at a training date (a record is known from its
-- updated_at, else signup_at; one with neither is always known), so that a merge found
-- later does not change what the model was trained on (pipelines/core/identity.py).
--
-- Rules: same normalised e-mail; or same E.164 phone and the same name key (name_key
-- ignores case, accents, punctuation and word order).
-- An e-mail or phone shared by more than max_shared ids is a placeholder
-- ("noreply@...", "0000000") rather than a person, and links nobody.
create or replace temp macro identity_edges_at(known_at, max_shared) as table
with records as (
    select distinct customer_id, email, phone, name_key from core.customer_records
    where known_at is null
       or coalesce(updated_at, signup_at) is null
       or cast(coalesce(updated_at, signup_at) as date) <= known_at
),

emails as (
    select email from records where email is not null
    group by email having count(distinct customer_id) between 2 and max_shared
),

phones as (
    select phone from records where phone is not null
    group by phone having count(distinct customer_id) between 2 and max_shared
),

email_pairs as (
    select distinct a.customer_id as customer_id_a, b.customer_id as customer_id_b,
           'email' as match_rule
    from records a
    join records b on a.email = b.email and a.customer_id < b.customer_id
    where a.email in (select email from emails)
),

phone_name_pairs as (
    select distinct a.customer_id as customer_id_a, b.customer_id as customer_id_b,
           'phone_name' as match_rule
    from records a
    join records b
      on a.phone = b.phone and a.name_key = b.name_key and a.customer_id < b.customer_id
    where a.phone in (select phone from phones)
),

final as (
    select * from email_pairs
    union all
    select * from phone_name_pairs
)

select * from final;

-- cluster_survivors(clusters, known_at): each cluster's survivor, for the table named
-- clusters (customer_id, cluster_id): the earliest sign-up among the records known at
-- known_at (NULL: every record), then the smallest id, so that a person's id stays put
-- when a newer duplicate record arrives. sql/core/customer_map.sql and
-- sql/models/customer_map_known_at.sql pick survivors with it.
create or replace temp macro cluster_survivors(clusters, known_at) as table
with first_signup as (
    select customer_id, min(signup_at) as signup_at
    from core.customer_records
    where known_at is null
       or coalesce(updated_at, signup_at) is null
       or cast(coalesce(updated_at, signup_at) as date) <= known_at
    group by customer_id
)

select
    c.cluster_id,
    arg_min(c.customer_id, (coalesce(f.signup_at, timestamp '9999-12-31'), c.customer_id))
        as survivor_id
from query_table(clusters) c
left join first_signup f using (customer_id)
group by c.cluster_id;
