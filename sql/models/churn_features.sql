-- models.churn_features: one row per customer with at least one completed order on or
-- before $cutoff (DATE), described only by what was known at the end of the cutoff day.
-- Days are calendar days; "last 30 days" is (cutoff - 30, cutoff]; amounts in currency units.
-- Missing values stay NULL (no purchases gap yet, no events, no profile): the model
-- handles them natively.
--
-- The features are defined once, as the table macro churn_features_at(cutoff) (a temporary
-- macro of this connection), so that the churn step can read them at its validation
-- cutoffs without storing each; the last statement stores them at $cutoff. Rows come in no
-- particular order.
create or replace temp macro churn_features_at(cutoff) as table

with

-- Every table is read up to the cutoff only (each CTE below that reads one drops the rows
-- dated after it), so nothing below can leak.

-- Each order with the time of the customer's previous completed order, for the gaps
-- between purchases (orders at the same instant make a gap of 0 in either order).
orders as (
    select
        customer_id,
        amount,
        status,
        is_completed_order,
        order_date,
        case when is_completed_order then
            date_diff('second', lag(order_at) over (partition by customer_id, is_completed_order order by order_at),
                      order_at)
        end as gap_seconds
    from core.transactions
    where order_date <= cast(cutoff as date)
),

-- One pass over the customer's orders: the completed ones are summarised, returns and
-- refunds are counted among all of them, whatever their status.
order_summaries as (
    select
        customer_id,
        max(order_date) filter (where is_completed_order) as last_order_date,
        min(order_date) filter (where is_completed_order) as first_order_date,
        count(*) filter (where is_completed_order) as order_count,
        -- Amounts add up as DECIMAL and gaps as integers: exact, so reruns agree to the last
        -- bit (a parallel DOUBLE sum depends on the order its partial sums are combined in).
        sum(amount::decimal(38, 10)) filter (where is_completed_order)::double as revenue_total,
        avg(amount::decimal(38, 10)) filter (where is_completed_order) as order_value_mean,
        sum(gap_seconds)::double / count(gap_seconds) / 86400.0 as gap_mean_days,
        -- sample standard deviation of the gaps, sqrt((n * sum(g^2) - sum(g)^2) / (n (n - 1))),
        -- from exact integer sums; NULL below two gaps, as stddev_samp
        sqrt(
            (count(gap_seconds)::hugeint * sum(gap_seconds::hugeint * gap_seconds)
             - sum(gap_seconds::hugeint) * sum(gap_seconds::hugeint))::double
            / nullif(count(gap_seconds) * (count(gap_seconds) - 1), 0)
        ) / 86400.0 as gap_std_days,
        count(*) filter (where is_completed_order and order_date > cast(cutoff as date) - 30) as orders_last_30d,
        count(*) filter (where is_completed_order and order_date > cast(cutoff as date) - 90) as orders_last_90d,
        count(*) filter (where is_completed_order and order_date > cast(cutoff as date) - 180) as orders_last_180d,
        coalesce(sum(amount::decimal(38, 10))
                 filter (where is_completed_order and order_date > cast(cutoff as date) - 90), 0)::double
            as revenue_last_90d,
        coalesce(sum(amount::decimal(38, 10))
                 filter (where is_completed_order and order_date > cast(cutoff as date) - 180), 0)::double
            as revenue_last_180d,
        avg(case when status in ('returned', 'refunded') or amount < 0 then 1.0 else 0.0 end)
            as return_refund_share
    from orders
    group by customer_id
    having count(*) filter (where is_completed_order) > 0
),

order_ages as (
    select
        customer_id,
        date_diff('day', last_order_date, cast(cutoff as date)) as days_since_last_order,
        date_diff('day', first_order_date, cast(cutoff as date)) as days_since_first_order
    from order_summaries
),

-- Spend trend: daily spend in the recent window over daily spend before it. Undefined
-- (NULL) until the earlier period is at least as long as the window, so that a
-- customer's first order alone cannot make a trend.
spend_trends as (
    select
        order_summaries.customer_id,
        case when order_ages.days_since_first_order >= 180 then
            (revenue_last_90d / 90.0)
            / nullif((revenue_total - revenue_last_90d) / (order_ages.days_since_first_order - 90), 0)
        end as spend_trend_90d,
        case when order_ages.days_since_first_order >= 360 then
            (revenue_last_180d / 180.0)
            / nullif((revenue_total - revenue_last_180d) / (order_ages.days_since_first_order - 180), 0)
        end as spend_trend_180d
    from order_summaries
    inner join order_ages on order_summaries.customer_id = order_ages.customer_id
),

events as not materialized (
    select
        customer_id,
        event_id,
        event_type,
        value,
        cast(event_at as date) as event_date,
        event_at,
        properties
    from core.events
    where cast(event_at as date) <= cast(cutoff as date)
),

-- Over the whole history up to the cutoff.
event_summaries as (
    select
        customer_id,
        max(event_date) as last_event_date,
        -- Clicks per open over the whole history; NULL without any open.
        count(*) filter (where event_type = 'email_click')
            / nullif(count(*) filter (where event_type = 'email_open'), 0) as email_click_to_open_rate,
        count(*) filter (where event_type = 'complaint') as complaint_count
    from events
    group by customer_id
),

-- Events per type in the windows before the cutoff, from the last 180 days only (a
-- separate pass: most events are older). A fixed list of event types keeps the feature
-- list the same at every cutoff; a new event type needs a line here.
recent_events as (
    select
        customer_id,
        count(*) filter (where event_type = 'page_view' and event_date > cast(cutoff as date) - 30) as page_view_events_last_30d,
        count(*) filter (where event_type = 'page_view' and event_date > cast(cutoff as date) - 90) as page_view_events_last_90d,
        count(*) filter (where event_type = 'page_view') as page_view_events_last_180d,
        count(*) filter (where event_type = 'email_open' and event_date > cast(cutoff as date) - 30) as email_open_events_last_30d,
        count(*) filter (where event_type = 'email_open' and event_date > cast(cutoff as date) - 90) as email_open_events_last_90d,
        count(*) filter (where event_type = 'email_open') as email_open_events_last_180d,
        count(*) filter (where event_type = 'email_click' and event_date > cast(cutoff as date) - 30) as email_click_events_last_30d,
        count(*) filter (where event_type = 'email_click' and event_date > cast(cutoff as date) - 90) as email_click_events_last_90d,
        count(*) filter (where event_type = 'email_click') as email_click_events_last_180d,
        count(*) filter (where event_type = 'support_ticket' and event_date > cast(cutoff as date) - 30) as support_ticket_events_last_30d,
        count(*) filter (where event_type = 'support_ticket' and event_date > cast(cutoff as date) - 90) as support_ticket_events_last_90d,
        count(*) filter (where event_type = 'support_ticket') as support_ticket_events_last_180d,
        count(*) filter (where event_type = 'complaint' and event_date > cast(cutoff as date) - 30) as complaint_events_last_30d,
        count(*) filter (where event_type = 'complaint' and event_date > cast(cutoff as date) - 90) as complaint_events_last_90d,
        count(*) filter (where event_type = 'complaint') as complaint_events_last_180d,
        count(*) filter (where event_type = 'survey_response' and event_date > cast(cutoff as date) - 30) as survey_response_events_last_30d,
        count(*) filter (where event_type = 'survey_response' and event_date > cast(cutoff as date) - 90) as survey_response_events_last_90d,
        count(*) filter (where event_type = 'survey_response') as survey_response_events_last_180d
    from events
    where event_date > cast(cutoff as date) - 180
    group by customer_id
),

-- Support tickets and survey responses: counts, means and the latest answer of each kind,
-- the event id breaking ties in time. A pass of their own (a tenth of the events): building
-- the (time, id) key or parsing the properties of every event costs more than the rest of
-- the events together.
answers as (
    select
        customer_id,
        count(*) filter (where event_type = 'support_ticket') as support_ticket_count,
        -- support_ticket value = first-response time in hours.
        avg(value::decimal(38, 10)) filter (where event_type = 'support_ticket') as support_response_hours_mean,
        arg_max(value, (event_at, event_id)) filter (where event_type = 'support_ticket' and value is not null)
            as support_response_hours_last,
        arg_max(value, (event_at, event_id)) filter (where survey = 'nps' and value is not null) as nps_last,
        arg_max(value, (event_at, event_id)) filter (where survey = 'csat' and value is not null) as csat_last
    from (
        select
            *,
            case when event_type = 'survey_response'
                then try(json_extract_string(properties, '$.survey')) end as survey
        from events
        where event_type in ('support_ticket', 'survey_response')
    )
    group by customer_id
),

-- The profile as known at the end of the cutoff day: of the customer's record versions
-- (core.customer_records, every delivered version) those written on or before it, each
-- field from the latest version that has one, as core.customers does over all versions
-- (a version without any timestamp is taken as always known). A version delivered later
-- never changes the features at an earlier cutoff, so the churn model trained there
-- stays the same model (pipelines/scoring/churn.py reuses it).
profile_versions as (
    select
        m.customer_id,
        r.birth_date,
        r.gender,
        r.country,
        r.marketing_consent,
        row_number() over (
            order by coalesce(r.updated_at, r.signup_at, timestamp '1900-01-01'), r._ingested_at,
                     r._source_file, r._file_sha256, r._row_number) as recency_key
    from core.customer_records r
    join core.customer_map m on m.source_customer_id = r.customer_id
    where coalesce(r.updated_at, r.signup_at) is null
       or cast(coalesce(r.updated_at, r.signup_at) as date) <= cast(cutoff as date)
),

customers as (
    select
        customer_id,
        arg_max(birth_date, recency_key) filter (where birth_date is not null) as birth_date,
        arg_max(gender, recency_key) filter (where gender is not null) as gender,
        arg_max(country, recency_key) filter (where country is not null) as country,
        coalesce(
            arg_max(marketing_consent, recency_key) filter (where marketing_consent is not null),
            false
        ) as marketing_consent
    from profile_versions
    group by customer_id
),

final as (
    select
        order_summaries.customer_id,
        order_ages.days_since_last_order,
        order_ages.days_since_first_order,
        order_summaries.order_count,
        order_summaries.revenue_total,
        order_summaries.order_value_mean,
        order_summaries.gap_mean_days,
        order_summaries.gap_std_days,
        order_ages.days_since_last_order / nullif(order_summaries.gap_mean_days, 0)
            as recency_gap_ratio,
        order_summaries.orders_last_30d,
        order_summaries.orders_last_90d,
        order_summaries.orders_last_180d,
        order_summaries.revenue_last_90d,
        order_summaries.revenue_last_180d,
        spend_trends.spend_trend_90d,
        spend_trends.spend_trend_180d,
        order_summaries.return_refund_share,
        coalesce(recent_events.page_view_events_last_30d, 0) as page_view_events_last_30d,
        coalesce(recent_events.page_view_events_last_90d, 0) as page_view_events_last_90d,
        coalesce(recent_events.page_view_events_last_180d, 0) as page_view_events_last_180d,
        coalesce(recent_events.email_open_events_last_30d, 0) as email_open_events_last_30d,
        coalesce(recent_events.email_open_events_last_90d, 0) as email_open_events_last_90d,
        coalesce(recent_events.email_open_events_last_180d, 0) as email_open_events_last_180d,
        coalesce(recent_events.email_click_events_last_30d, 0) as email_click_events_last_30d,
        coalesce(recent_events.email_click_events_last_90d, 0) as email_click_events_last_90d,
        coalesce(recent_events.email_click_events_last_180d, 0) as email_click_events_last_180d,
        coalesce(recent_events.support_ticket_events_last_30d, 0) as support_ticket_events_last_30d,
        coalesce(recent_events.support_ticket_events_last_90d, 0) as support_ticket_events_last_90d,
        coalesce(recent_events.support_ticket_events_last_180d, 0) as support_ticket_events_last_180d,
        coalesce(recent_events.complaint_events_last_30d, 0) as complaint_events_last_30d,
        coalesce(recent_events.complaint_events_last_90d, 0) as complaint_events_last_90d,
        coalesce(recent_events.complaint_events_last_180d, 0) as complaint_events_last_180d,
        coalesce(recent_events.survey_response_events_last_30d, 0) as survey_response_events_last_30d,
        coalesce(recent_events.survey_response_events_last_90d, 0) as survey_response_events_last_90d,
        coalesce(recent_events.survey_response_events_last_180d, 0) as survey_response_events_last_180d,
        date_diff('day', event_summaries.last_event_date, cast(cutoff as date)) as days_since_last_event,
        event_summaries.email_click_to_open_rate,
        coalesce(event_summaries.complaint_count, 0) as complaint_count,
        coalesce(answers.support_ticket_count, 0) as support_ticket_count,
        answers.support_response_hours_mean,
        answers.support_response_hours_last,
        answers.nps_last,
        answers.csat_last,
        -- Whole years at the cutoff; impossible birth dates count as unknown.
        case
            when date_sub('year', customers.birth_date, cast(cutoff as date)) between 0 and 120
                then date_sub('year', customers.birth_date, cast(cutoff as date))
        end as age_years,
        customers.country,
        customers.gender,
        customers.marketing_consent,
        cast(cutoff as date) as cutoff_date
    from order_summaries
    inner join order_ages on order_summaries.customer_id = order_ages.customer_id
    left join spend_trends on order_summaries.customer_id = spend_trends.customer_id
    left join event_summaries on order_summaries.customer_id = event_summaries.customer_id
    left join recent_events on order_summaries.customer_id = recent_events.customer_id
    left join answers on order_summaries.customer_id = answers.customer_id
    left join customers on order_summaries.customer_id = customers.customer_id
)

select * from final;

create or replace table models.churn_features as
select * from churn_features_at($cutoff);
