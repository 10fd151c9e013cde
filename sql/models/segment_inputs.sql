-- models.segment_inputs: one row per customer known on or before $as_of, with what the
-- tier, lifecycle and playbook rules read (models/segments.py documents each column).
-- A customer is known once they ordered (any status) or signed up on or before $as_of;
-- a master record without a sign-up date counts as known (known_customers, sql/macros.sql).
create or replace table models.segment_inputs as
with known as (
    select customer_id from known_customers($as_of)
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
