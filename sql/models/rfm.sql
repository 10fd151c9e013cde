-- models.rfm: one row per customer with at least one completed order on or before $as_of.
--
-- Parameters
--   $as_of  DATE  observation date; only rows with order_date <= $as_of are used.
--
-- Definitions (amounts in currency units, days are UTC calendar days)
--   frequency            completed orders (core.transactions.is_completed_order)
--   recency_days         days from the last completed order's date to $as_of (0 = ordered on $as_of)
--   revenue_total        gross revenue: sum of completed order amounts
--   monetary_value       net revenue: revenue_total plus every negative amount (returns and
--                        refunds as delivered, whatever their status except 'cancelled');
--                        can be 0 or negative when everything was returned
--   average_order_value  revenue_total / frequency (gross, per completed order)
--   orders_total         every order row of the customer, of any status (completed, cancelled,
--                        refunded, returned, zero or negative amounts included)
--   average_gap_days     mean days between consecutive completed orders
--                        ((last - first) / (frequency - 1), fractional); NULL with one order
--   last_gap_days        days between the last two completed orders (fractional; 0 when the two
--                        latest were placed at the same instant); NULL with one order
-- Rows with status refunded/returned and a positive amount are neither revenue nor a deduction:
-- they are the reversed sale itself, which never counted as revenue.
--
-- One aggregate per customer over their rows (FILTER for the completed ones); the last two
-- order times come from max(order_at, 2) instead of a window over every order.

create or replace table models.rfm as

with

transactions as (
    select
        customer_id,
        order_at,
        order_date,
        amount,
        status,
        is_completed_order
    from core.transactions
    where order_date <= $as_of
),

customer_summary as (
    -- amounts add up as DECIMAL: exact, so reruns agree to the last bit (parallel DOUBLE sums do not)
    select
        customer_id,
        count(*) filter (where is_completed_order) as frequency,
        (sum(amount::decimal(38, 10)) filter (where is_completed_order))::double as revenue_total,
        min(order_at) filter (where is_completed_order) as first_purchase_at,
        max(order_at) filter (where is_completed_order) as last_purchase_at,
        max(order_date) filter (where is_completed_order) as last_purchase_date,
        -- the latest two completed order times, latest first (ties kept)
        max(order_at, 2) filter (where is_completed_order) as last_two_order_at,
        count(*) as orders_total,
        coalesce(sum(amount::decimal(38, 10)) filter (where amount < 0 and status <> 'cancelled'), 0)::double
            as negative_amount_total
    from transactions
    group by customer_id
    having count(*) filter (where is_completed_order) > 0
),

final as (
    select
        customer_id,
        date_diff('day', last_purchase_date, $as_of::date) as recency_days,
        frequency,
        revenue_total + negative_amount_total as monetary_value,
        revenue_total / frequency as average_order_value,
        orders_total,
        revenue_total,
        case when frequency > 1 then
            date_diff('microsecond', first_purchase_at, last_purchase_at) / 86400e6 / (frequency - 1)
        end as average_gap_days,
        date_diff('microsecond', last_two_order_at[2], last_two_order_at[1]) / 86400e6 as last_gap_days,
        first_purchase_at,
        last_purchase_at
    from customer_summary
)

select * from final
