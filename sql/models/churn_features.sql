-- models.churn_features: one row per customer with at least one completed order on or
-- before $cutoff (DATE), described only by what was known at the end of the cutoff day.
-- Days are calendar days; "last 30 days" is (cutoff - 30, cutoff]; amounts in currency units.
-- Missing values stay NULL (no purchases gap yet, no events, no profile): the model
-- handles them natively.
create or replace table models.churn_features as

with

parameters as (
    select cast($cutoff as date) as cutoff_date
),

-- Every row dated after the cutoff is dropped here, once, so nothing below can leak.
transactions as (
    select
        core.transactions.customer_id,
        core.transactions.order_id,
        core.transactions.amount,
        core.transactions.status,
        core.transactions.is_completed_order,
        core.transactions.order_date,
        core.transactions.order_at
    from core.transactions
    cross join parameters
    where core.transactions.order_date <= parameters.cutoff_date
),

events as (
    select
        core.events.customer_id,
        core.events.event_id,
        core.events.event_type,
        core.events.value,
        try(json_extract_string(core.events.properties, '$.survey')) as survey,
        cast(core.events.event_at as date) as event_date,
        core.events.event_at
    from core.events
    cross join parameters
    where cast(core.events.event_at as date) <= parameters.cutoff_date
),

-- core.customers holds the latest version of each profile. A version written after
-- the cutoff was not known then, so such a profile counts as missing at this cutoff
-- (a version without any timestamp is taken as always known).
customers as (
    select
        core.customers.customer_id,
        core.customers.birth_date,
        core.customers.gender,
        core.customers.country,
        core.customers.marketing_consent,
        coalesce(core.customers.updated_at, core.customers.signup_at) as known_at
    from core.customers
    cross join parameters
    where coalesce(core.customers.updated_at, core.customers.signup_at) is null
       or cast(coalesce(core.customers.updated_at, core.customers.signup_at) as date)
          <= parameters.cutoff_date
    qualify row_number() over (
        partition by core.customers.customer_id
        order by known_at desc nulls last
    ) = 1
),

completed_orders as (
    select
        customer_id,
        order_id,
        amount,
        order_date,
        order_at,
        -- Gap to the customer's previous order in whole seconds: integers add up exactly,
        -- so the mean and spread below do not depend on the order DuckDB's threads add in.
        date_diff('second', lag(order_at) over (partition by customer_id order by order_at, order_id), order_at)
            as gap_seconds
    from transactions
    where is_completed_order
),

order_summaries as (
    select
        completed_orders.customer_id,
        date_diff('day', max(completed_orders.order_date), any_value(parameters.cutoff_date))
            as days_since_last_order,
        date_diff('day', min(completed_orders.order_date), any_value(parameters.cutoff_date))
            as days_since_first_order,
        count(*) as order_count,
        -- Amounts add up as DECIMAL and gaps as integers: exact, so reruns agree to the last
        -- bit (a parallel DOUBLE sum depends on the order its partial sums are combined in).
        sum(completed_orders.amount::decimal(38, 10))::double as revenue_total,
        avg(completed_orders.amount::decimal(38, 10)) as order_value_mean,
        sum(completed_orders.gap_seconds)::double / count(completed_orders.gap_seconds) / 86400.0
            as gap_mean_days,
        -- sample standard deviation of the gaps, sqrt((n * sum(g^2) - sum(g)^2) / (n (n - 1))),
        -- from exact integer sums; NULL below two gaps, as stddev_samp
        sqrt(
            (count(completed_orders.gap_seconds)::hugeint
                 * sum(completed_orders.gap_seconds::hugeint * completed_orders.gap_seconds)
             - sum(completed_orders.gap_seconds::hugeint) * sum(completed_orders.gap_seconds::hugeint))::double
            / nullif(count(completed_orders.gap_seconds) * (count(completed_orders.gap_seconds) - 1), 0)
        ) / 86400.0 as gap_std_days,
        count(*) filter (where completed_orders.order_date > parameters.cutoff_date - 30) as orders_last_30d,
        count(*) filter (where completed_orders.order_date > parameters.cutoff_date - 90) as orders_last_90d,
        count(*) filter (where completed_orders.order_date > parameters.cutoff_date - 180) as orders_last_180d,
        coalesce(sum(completed_orders.amount::decimal(38, 10)) filter (where completed_orders.order_date > parameters.cutoff_date - 90), 0)::double
            as revenue_last_90d,
        coalesce(sum(completed_orders.amount::decimal(38, 10)) filter (where completed_orders.order_date > parameters.cutoff_date - 180), 0)::double
            as revenue_last_180d
    from completed_orders
    cross join parameters
    group by completed_orders.customer_id
),

-- Spend trend: daily spend in the recent window over daily spend before it. Undefined
-- (NULL) until the earlier period is at least as long as the window, so that a
-- customer's first order alone cannot make a trend.
spend_trends as (
    select
        customer_id,
        case when days_since_first_order >= 180 then
            (revenue_last_90d / 90.0)
            / nullif((revenue_total - revenue_last_90d) / (days_since_first_order - 90), 0)
        end as spend_trend_90d,
        case when days_since_first_order >= 360 then
            (revenue_last_180d / 180.0)
            / nullif((revenue_total - revenue_last_180d) / (days_since_first_order - 180), 0)
        end as spend_trend_180d
    from order_summaries
),

-- Returns and refunds among all orders the customer placed, whatever their status.
return_shares as (
    select
        customer_id,
        avg(case when status in ('returned', 'refunded') or amount < 0 then 1.0 else 0.0 end)
            as return_refund_share
    from transactions
    group by customer_id
),

-- A fixed list of event types keeps the feature list the same at every cutoff; a new
-- event type needs a line here.
event_summaries as (
    select
        events.customer_id,
        count(*) filter (where event_type = 'page_view' and event_date > cutoff_date - 30) as page_view_events_last_30d,
        count(*) filter (where event_type = 'page_view' and event_date > cutoff_date - 90) as page_view_events_last_90d,
        count(*) filter (where event_type = 'page_view' and event_date > cutoff_date - 180) as page_view_events_last_180d,
        count(*) filter (where event_type = 'email_open' and event_date > cutoff_date - 30) as email_open_events_last_30d,
        count(*) filter (where event_type = 'email_open' and event_date > cutoff_date - 90) as email_open_events_last_90d,
        count(*) filter (where event_type = 'email_open' and event_date > cutoff_date - 180) as email_open_events_last_180d,
        count(*) filter (where event_type = 'email_click' and event_date > cutoff_date - 30) as email_click_events_last_30d,
        count(*) filter (where event_type = 'email_click' and event_date > cutoff_date - 90) as email_click_events_last_90d,
        count(*) filter (where event_type = 'email_click' and event_date > cutoff_date - 180) as email_click_events_last_180d,
        count(*) filter (where event_type = 'support_ticket' and event_date > cutoff_date - 30) as support_ticket_events_last_30d,
        count(*) filter (where event_type = 'support_ticket' and event_date > cutoff_date - 90) as support_ticket_events_last_90d,
        count(*) filter (where event_type = 'support_ticket' and event_date > cutoff_date - 180) as support_ticket_events_last_180d,
        count(*) filter (where event_type = 'complaint' and event_date > cutoff_date - 30) as complaint_events_last_30d,
        count(*) filter (where event_type = 'complaint' and event_date > cutoff_date - 90) as complaint_events_last_90d,
        count(*) filter (where event_type = 'complaint' and event_date > cutoff_date - 180) as complaint_events_last_180d,
        count(*) filter (where event_type = 'survey_response' and event_date > cutoff_date - 30) as survey_response_events_last_30d,
        count(*) filter (where event_type = 'survey_response' and event_date > cutoff_date - 90) as survey_response_events_last_90d,
        count(*) filter (where event_type = 'survey_response' and event_date > cutoff_date - 180) as survey_response_events_last_180d,
        date_diff('day', max(event_date), any_value(cutoff_date)) as days_since_last_event,
        -- Clicks per open over the whole history; NULL without any open.
        count(*) filter (where event_type = 'email_click')
            / nullif(count(*) filter (where event_type = 'email_open'), 0) as email_click_to_open_rate,
        count(*) filter (where event_type = 'complaint') as complaint_count,
        count(*) filter (where event_type = 'support_ticket') as support_ticket_count,
        -- support_ticket value = first-response time in hours.
        avg(value::decimal(38, 10)) filter (where event_type = 'support_ticket') as support_response_hours_mean,
        arg_max(value, (event_at, event_id)) filter (where event_type = 'support_ticket' and value is not null)
            as support_response_hours_last,
        arg_max(value, (event_at, event_id)) filter (where event_type = 'survey_response' and survey = 'nps' and value is not null)
            as nps_last,
        arg_max(value, (event_at, event_id)) filter (where event_type = 'survey_response' and survey = 'csat' and value is not null)
            as csat_last
    from events
    cross join parameters
    group by events.customer_id
),

final as (
    select
        order_summaries.customer_id,
        order_summaries.days_since_last_order,
        order_summaries.days_since_first_order,
        order_summaries.order_count,
        order_summaries.revenue_total,
        order_summaries.order_value_mean,
        order_summaries.gap_mean_days,
        order_summaries.gap_std_days,
        order_summaries.days_since_last_order / nullif(order_summaries.gap_mean_days, 0)
            as recency_gap_ratio,
        order_summaries.orders_last_30d,
        order_summaries.orders_last_90d,
        order_summaries.orders_last_180d,
        order_summaries.revenue_last_90d,
        order_summaries.revenue_last_180d,
        spend_trends.spend_trend_90d,
        spend_trends.spend_trend_180d,
        return_shares.return_refund_share,
        coalesce(event_summaries.page_view_events_last_30d, 0) as page_view_events_last_30d,
        coalesce(event_summaries.page_view_events_last_90d, 0) as page_view_events_last_90d,
        coalesce(event_summaries.page_view_events_last_180d, 0) as page_view_events_last_180d,
        coalesce(event_summaries.email_open_events_last_30d, 0) as email_open_events_last_30d,
        coalesce(event_summaries.email_open_events_last_90d, 0) as email_open_events_last_90d,
        coalesce(event_summaries.email_open_events_last_180d, 0) as email_open_events_last_180d,
        coalesce(event_summaries.email_click_events_last_30d, 0) as email_click_events_last_30d,
        coalesce(event_summaries.email_click_events_last_90d, 0) as email_click_events_last_90d,
        coalesce(event_summaries.email_click_events_last_180d, 0) as email_click_events_last_180d,
        coalesce(event_summaries.support_ticket_events_last_30d, 0) as support_ticket_events_last_30d,
        coalesce(event_summaries.support_ticket_events_last_90d, 0) as support_ticket_events_last_90d,
        coalesce(event_summaries.support_ticket_events_last_180d, 0) as support_ticket_events_last_180d,
        coalesce(event_summaries.complaint_events_last_30d, 0) as complaint_events_last_30d,
        coalesce(event_summaries.complaint_events_last_90d, 0) as complaint_events_last_90d,
        coalesce(event_summaries.complaint_events_last_180d, 0) as complaint_events_last_180d,
        coalesce(event_summaries.survey_response_events_last_30d, 0) as survey_response_events_last_30d,
        coalesce(event_summaries.survey_response_events_last_90d, 0) as survey_response_events_last_90d,
        coalesce(event_summaries.survey_response_events_last_180d, 0) as survey_response_events_last_180d,
        event_summaries.days_since_last_event,
        event_summaries.email_click_to_open_rate,
        coalesce(event_summaries.complaint_count, 0) as complaint_count,
        coalesce(event_summaries.support_ticket_count, 0) as support_ticket_count,
        event_summaries.support_response_hours_mean,
        event_summaries.support_response_hours_last,
        event_summaries.nps_last,
        event_summaries.csat_last,
        -- Whole years at the cutoff; impossible birth dates count as unknown.
        case
            when date_sub('year', customers.birth_date, parameters.cutoff_date) between 0 and 120
                then date_sub('year', customers.birth_date, parameters.cutoff_date)
        end as age_years,
        customers.country,
        customers.gender,
        customers.marketing_consent,
        parameters.cutoff_date
    from order_summaries
    cross join parameters
    left join spend_trends on order_summaries.customer_id = spend_trends.customer_id
    left join return_shares on order_summaries.customer_id = return_shares.customer_id
    left join event_summaries on order_summaries.customer_id = event_summaries.customer_id
    left join customers on order_summaries.customer_id = customers.customer_id
)

select * from final
order by customer_id
