-- models.segment_inputs: one row per customer known on or before $as_of, with what the
-- tier, lifecycle and playbook rules read (models/segments.py documents each column).
-- A customer is known once they ordered (any status) or signed up on or before $as_of;
-- a master record without a sign-up date counts as known.
create or replace table models.segment_inputs as
with customers as (
    select * from core.customers
),

orders as (
    select customer_id, min(order_date) as first_order_date
    from core.transactions
    where order_date <= $as_of
    group by customer_id
),

known as (
    select c.customer_id
    from customers c
    left join orders o using (customer_id)
    where o.first_order_date is not null
       or (c.is_in_customer_master and coalesce(c.signup_at::date, $as_of) <= $as_of)
),

final as (
    select
        k.customer_id,
        r.customer_id is not null as has_completed_order,
        r.revenue_total,
        r.recency_days,
        r.first_purchase_at,
        r.average_gap_days,
        r.last_gap_days,
        p.predicted_clv,
        p.p_alive,
        ch.churn_probability,
        s.rfm_segment,
        p.expected_next_order_date
    from known k
    left join models.rfm r using (customer_id)
    left join models.rfm_scores s using (customer_id)
    left join models.clv_predictions p using (customer_id)
    left join models.churn_scores ch using (customer_id)
)

select * from final
