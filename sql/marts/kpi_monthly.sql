-- marts.kpi_monthly, this run's rows: one row per calendar month (UTC) from the month of the
-- first completed order to the month holding $as_of. pipelines/marts.py checks them and
-- appends them to the history table marts.kpi_monthly (a rerun's rows are replaced).
--
-- Parameters
--   $as_of   DATE     observation date; only orders and events dated on or before it count
--   $run_id  VARCHAR
--
-- Definitions (docs/kpis.md has the reasoning; A(m) = customers active in month m)
--   active_customers             customers with >= 1 completed order in m
--   new_customers                active customers whose first completed order ever is in m
--   returning_customers          active_customers - new_customers
--   repeat_purchase_rate         share of A(m) with >= 2 completed orders in m
--   retention_rate               |A(m-1) and A(m)| / |A(m-1)|; NULL when A(m-1) is empty
--   churn_rate                   |A(m-1) not in A(m)| / |A(m-1)| = 1 - retention_rate
--   orders, revenue              completed orders in m and the sum of their amounts (gross)
--   average_order_value          revenue / orders
--   average_predicted_clv        mean predicted_clv of marts.customer_360; as-of month only
--   nps                          NPS responses in m: % promoters (9-10) - % detractors (0-6)
--   csat                         CSAT responses in m: share scoring 4 or 5
--   complaint_rate               complaint events in m / completed orders in m; NULL (not 0)
--                                when the events hold no service events (complaint or
--                                support_ticket) at all: without such a source it is unknown
--   median_first_response_hours  median value of the support_ticket events in m
--   is_partial_month             the as-of month, when $as_of is not its last day
create or replace temp table temp.main.kpi_monthly_run as
with transactions as (
    select * from core.transactions
    where order_date <= $as_of
),

events as (
    select * from core.events
    where event_at::date <= $as_of
),

customers as (
    select * from marts.customer_360
),

completed_orders as (
    select
        customer_id,
        date_trunc('month', order_date)::date as month,
        amount
    from transactions
    where is_completed_order
),

-- every month from the first completed order to the as-of month, so a month without
-- orders shows zeros instead of vanishing from a trend line
months as (
    select range::date as month
    from range(
        (select min(month) from completed_orders),
        date_trunc('month', $as_of::date) + interval 1 month,
        interval 1 month)
),

customer_months as (
    select
        customer_id,
        month,
        count(*) as orders,
        -- DECIMAL sums are exact, so reruns agree to the last bit
        sum(amount::decimal(38, 10)) as revenue
    from completed_orders
    group by customer_id, month
),

customer_activity as (
    select
        *,
        month = min(month) over (partition by customer_id) as is_new,
        lag(month) over (partition by customer_id order by month)
            = month - interval 1 month as was_active_previous_month
    from customer_months
),

activity_by_month as (
    select
        month,
        count(*) as active_customers,
        count(*) filter (where is_new) as new_customers,
        count(*) filter (where not is_new) as returning_customers,
        count(*) filter (where orders >= 2) as repeat_customers,
        count(*) filter (where was_active_previous_month) as retained_customers,
        sum(orders)::bigint as orders,
        sum(revenue)::double as revenue
    from customer_activity
    group by month
),

-- the survey a score belongs to, read exactly as staging does for validation (NPS 0-10,
-- CSAT 1-5); responses naming no known survey are left out
survey_responses as (
    select
        date_trunc('month', event_at)::date as month,
        lower(try(json_extract_string(properties, '$.survey'))) as survey,
        value
    from events
    where event_type = 'survey_response' and value is not null
),

surveys_by_month as (
    select
        month,
        100.0 * (count(*) filter (where survey = 'nps' and value >= 9)
                 - count(*) filter (where survey = 'nps' and value <= 6))
            / nullif(count(*) filter (where survey = 'nps'), 0) as nps,
        (count(*) filter (where survey = 'csat' and value >= 4))
            / nullif(count(*) filter (where survey = 'csat'), 0) as csat
    from survey_responses
    group by month
),

service_by_month as (
    select
        date_trunc('month', event_at)::date as month,
        count(*) filter (where event_type = 'complaint') as complaints,
        median(value) filter (where event_type = 'support_ticket')::double
            as median_first_response_hours
    from events
    where event_type in ('complaint', 'support_ticket')
    group by month
),

monthly as (
    select
        m.month,
        coalesce(a.active_customers, 0) as active_customers,
        coalesce(a.new_customers, 0) as new_customers,
        coalesce(a.returning_customers, 0) as returning_customers,
        coalesce(a.repeat_customers, 0) as repeat_customers,
        coalesce(a.retained_customers, 0) as retained_customers,
        lag(coalesce(a.active_customers, 0)) over (order by m.month)
            as previous_month_active_customers,
        coalesce(a.orders, 0) as orders,
        coalesce(a.revenue, 0) as revenue,
        s.nps,
        s.csat,
        case when (select count(*) from events
                   where event_type in ('complaint', 'support_ticket')) > 0
             then coalesce(v.complaints, 0) end as complaints,
        v.median_first_response_hours
    from months m
    left join activity_by_month a using (month)
    left join surveys_by_month s using (month)
    left join service_by_month v using (month)
),

final as (
    select
        $run_id as run_id,
        $as_of::date as as_of,
        month,
        month = date_trunc('month', $as_of::date) and $as_of::date < last_day($as_of::date)
            as is_partial_month,
        active_customers,
        new_customers,
        returning_customers,
        repeat_customers / nullif(active_customers, 0) as repeat_purchase_rate,
        retained_customers / nullif(previous_month_active_customers, 0) as retention_rate,
        (previous_month_active_customers - retained_customers)
            / nullif(previous_month_active_customers, 0) as churn_rate,
        orders,
        revenue,
        revenue / nullif(orders, 0) as average_order_value,
        case when month = date_trunc('month', $as_of::date)
             -- DECIMAL: exact, so reruns agree to the last bit
             then (select avg(predicted_clv::decimal(38, 10)) from customers) end
            as average_predicted_clv,
        nps,
        csat,
        complaints / nullif(orders, 0) as complaint_rate,
        median_first_response_hours
    from monthly
)

select * from final
order by month
