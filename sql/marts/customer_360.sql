-- marts.customer_360: one row per customer known as of the run, with every score,
-- segment, tier and action. frequency / recency / T / monetary_value are the BG/NBD
-- summary (repeat purchases; time in the model's unit); RFM's own measures are
-- recency_days, orders_completed and net_revenue.
create or replace table marts.customer_360 as
with population as (
    select * from models.customer_segments
),

profiles as (
    select * from core.customers
),

rfm as (
    select * from models.rfm
),

-- The ledger of every customer with an order on or before $as_of, whatever its status:
-- models.rfm holds buyers only, so a customer whose rows are all returns or cancellations
-- would show 0 and the column totals would not add up to the loaded lines. The same sums
-- as models.rfm (exact decimals), so the two agree for every buyer.
ledger as (
    select
        customer_id,
        count(*) as orders_total,
        count(*) filter (where is_completed_order) as orders_completed,
        coalesce(sum(amount::decimal(38, 10)) filter (where is_completed_order), 0)::double
            as revenue_total,
        coalesce((sum(amount::decimal(38, 10)) filter (where is_completed_order))::double, 0)
        + coalesce(sum(amount::decimal(38, 10)) filter (where amount < 0 and status <> 'cancelled'), 0)::double
            as net_revenue
    from core.transactions
    where order_date <= $as_of
    group by customer_id
),

scores as (
    select * from models.rfm_scores
),

summary as (
    select * from models.clv_summary where resolution = $resolution
),

predictions as (
    select * from models.clv_predictions
),

churn as (
    select * from models.churn_scores
),

-- Materialized: the joins finish (and free their hash tables) before the rows are sorted.
-- In one pipeline the seven hash tables and the sort of 1M wide rows did not fit in a
-- 1 GB memory_limit (DuckDB OutOfMemoryException); materialized they fit in 500 MB, in
-- about the same time, with the same rows in the same order.
final as materialized (
    select
        pop.customer_id,
        pr.email,
        pr.phone,
        pr.full_name,
        pr.birth_date,
        pr.city,
        pr.country,
        pr.marketing_consent,
        r.first_purchase_at,
        r.last_purchase_at,
        su.frequency,
        su.recency,
        su."T",
        su.monetary_value,
        coalesce(l.orders_total, 0) as orders_total,
        coalesce(l.orders_completed, 0) as orders_completed,
        coalesce(l.revenue_total, 0) as revenue_total,
        coalesce(l.net_revenue, 0) as net_revenue,
        r.recency_days,
        sc.r_score,
        sc.f_score,
        sc.m_score,
        sc.rfm_segment,
        pd.p_alive,
        columns(pd.* exclude (customer_id, p_alive, expected_order_value, predicted_clv,
                              predicted_clv_low, predicted_clv_high, expected_next_order_date)),
        pd.expected_order_value,
        pd.predicted_clv,
        pd.predicted_clv_low,
        pd.predicted_clv_high,
        pd.expected_next_order_date,
        ch.churn_probability,
        ch.churn_band,
        ch.churn_reasons,
        pop.value_tier,
        pop.lifecycle_stage,
        pop.recommended_action,
        $as_of::date as as_of,
        $run_id as run_id
    from population pop
    left join profiles pr using (customer_id)
    left join rfm r using (customer_id)
    left join ledger l using (customer_id)
    left join scores sc using (customer_id)
    left join summary su using (customer_id)
    left join predictions pd using (customer_id)
    left join churn ch using (customer_id)
)

select * from final
order by customer_id
