-- audit.customer_id_changes: every customer id that stopped being the id of some of its
-- source records this run, and the id those records have now. A person's id (the survivor
-- of their cluster: the earliest sign-up, then the smallest id; sql/core/customer_map.sql)
-- changes only when records of two clusters turn out to be one person (merged) or, after
-- a correction, a cluster comes apart (split: the old id lives on for the other records).
-- Appended by pipelines/core/build.py after core.customer_map is rebuilt; compared with
-- temp.main.previous_customer_map, the map before this run.
insert into audit.customer_id_changes
with changed as (
    select p.customer_id as previous_customer_id, n.customer_id, count(*) as source_ids
    from temp.main.previous_customer_map p
    join core.customer_map n using (source_customer_id)
    where p.customer_id <> n.customer_id
    group by all
)

select
    $run_id as run_id,
    c.previous_customer_id,
    c.customer_id,
    case
        when exists (select 1 from core.customer_map m where m.customer_id = c.previous_customer_id)
            then 'split'
        else 'merged'
    end as reason,
    c.source_ids as source_customer_ids,
    now()::timestamp as changed_at
from changed c
order by c.previous_customer_id, c.customer_id
