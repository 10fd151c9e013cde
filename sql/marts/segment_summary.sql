-- marts.segment_summary, this run's rows: one row per dimension and segment of
-- marts.customer_360. pipelines/marts.py checks them and appends them to the history table
-- marts.segment_summary (a rerun's rows are replaced).
--
-- Parameters
--   $as_of   DATE
--   $run_id  VARCHAR
--
-- Every customer of marts.customer_360 is counted once in each dimension: a customer
-- without a value for it (a prospect has no RFM segment and no churn band) falls in the
-- segment 'unassigned', so each dimension's share_of_customers adds up to 1.
create or replace temp table temp.main.segment_summary_run as
with customers as (
    select * from marts.customer_360
),

by_dimension as (
    select
        dimension,
        coalesce(segment, 'unassigned') as segment,
        customer_id,
        marketing_consent,
        revenue_total,
        net_revenue,
        predicted_clv,
        churn_probability
    from (
        select
            customer_id, marketing_consent, revenue_total, net_revenue, predicted_clv,
            churn_probability,
            rfm_segment::varchar as rfm_segment,
            value_tier::varchar as value_tier,
            lifecycle_stage::varchar as lifecycle_stage,
            recommended_action::varchar as recommended_action,
            churn_band::varchar as churn_band
        from customers
    )
    unpivot include nulls (
        segment for dimension in (rfm_segment, value_tier, lifecycle_stage,
                                  recommended_action, churn_band)
    )
),

segments as (
    select
        dimension,
        segment,
        count(*) as customers,
        count(*) filter (where marketing_consent) as consenting_customers,
        -- DECIMAL sums are exact, so reruns agree to the last bit
        coalesce(sum(revenue_total::decimal(38, 10)), 0)::double as revenue_total,
        coalesce(sum(net_revenue::decimal(38, 10)), 0)::double as net_revenue,
        avg(predicted_clv::decimal(38, 10)) as average_predicted_clv,
        sum(predicted_clv::decimal(38, 10))::double as total_predicted_clv,
        avg(churn_probability::decimal(38, 10)) as average_churn_probability
    from by_dimension
    group by dimension, segment
),

final as (
    select
        $run_id as run_id,
        $as_of::date as as_of,
        dimension,
        segment,
        customers,
        customers / sum(customers) over (partition by dimension) as share_of_customers,
        consenting_customers,
        revenue_total,
        net_revenue,
        average_predicted_clv,
        total_predicted_clv,
        average_churn_probability
    from segments
)

select * from final
order by dimension, customers desc, segment
