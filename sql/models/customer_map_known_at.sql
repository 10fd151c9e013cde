-- temp.main.customer_map_known_at: every source customer id -> its customer as the records
-- known on $known_at (DATE) tell: the clusters of identity_edges_at($known_at)
-- (temp.main.identity_clusters_known_at, made by pipelines/core/identity.py), each one's
-- survivor picked as sql/core/customer_map.sql picks it (the earliest sign-up known then,
-- then the smallest id). An id in no cluster is its own customer.
create or replace temp table customer_map_known_at as
with clusters as (
    select * from identity_clusters_known_at
),

survivors as (
    select * from cluster_survivors('identity_clusters_known_at', $known_at)
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
