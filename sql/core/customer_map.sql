-- core.customer_map: every customer id seen in any source -> the surviving customer_id.
-- core.identity_clusters (customer_id, cluster_id, match_rule) comes from the connected
-- components of core.identity_edges (pipelines/core/identity.py).
-- Survivor of a cluster: the earliest sign-up, then the smallest id, so that a person's
-- id stays put when a newer duplicate record arrives.
create or replace table core.customer_map as
with clusters as (
    select * from core.identity_clusters
),

survivors as (
    select * from cluster_survivors('core.identity_clusters', null::date)
),

-- Only ids of rows that passed validation: an id seen only on quarantined rows is no
-- customer (it would show up as a prospect with no orders).
all_ids as (
    select customer_id from core.customer_records
    union
    select customer_id from staging.transactions s
    anti join quarantine.transactions q using (_file_sha256, _row_number)
    where s.customer_id is not null
    union
    select customer_id from staging.events s
    anti join quarantine.events q using (_file_sha256, _row_number)
    where s.customer_id is not null
),

final as (
    select
        a.customer_id as source_customer_id,
        coalesce(s.survivor_id, a.customer_id) as customer_id,
        case
            when s.survivor_id is null or s.survivor_id = a.customer_id then 'self'
            else c.match_rule
        end as match_rule
    from all_ids a
    left join clusters c on c.customer_id = a.customer_id
    left join survivors s on s.cluster_id = c.cluster_id
)

select * from final
