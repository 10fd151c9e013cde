-- temp.main.customer_map_known_at: every source customer id -> its customer as the records
-- known on $known_at (DATE) tell: the clusters of identity_edges_at($known_at)
-- (temp.main.identity_clusters_known_at, made by pipelines/core/identity.py), each one's
-- survivor picked as sql/core/customer_map.sql picks it (the earliest sign-up known then,
-- then the smallest id). An id in no cluster is its own customer.
create or replace temp table customer_map_known_at as
with clusters as (
    select * from identity_clusters_known_at
),

first_signup as (
    select customer_id, min(signup_at) as signup_at
    from core.customer_records
    where coalesce(updated_at, signup_at) is null
       or cast(coalesce(updated_at, signup_at) as date) <= $known_at
    group by customer_id
),

survivors as (
    select
        c.cluster_id,
        arg_min(c.customer_id, (coalesce(f.signup_at, timestamp '9999-12-31'), c.customer_id))
            as survivor_id
    from clusters c
    left join first_signup f using (customer_id)
    group by c.cluster_id
),

final as (
    select
        m.source_customer_id,
        coalesce(s.survivor_id, m.source_customer_id) as customer_id,
        case
            when s.survivor_id is null or s.survivor_id = m.source_customer_id then 'self'
            else c.match_rule
        end as match_rule
    from core.customer_map m
    left join clusters c on c.customer_id = m.source_customer_id
    left join survivors s on s.cluster_id = c.cluster_id
)

select * from final
