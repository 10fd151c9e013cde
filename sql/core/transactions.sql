-- core.transactions: one row per order; order lines summed into their order. An order is
-- one customer's lines under one order id: exports that reuse an order id for several
-- customers (seen in real shop data) give each customer their own order, so no customer
-- loses their purchases to another.
create or replace table core.transactions as
with lines as (
    select * from core.transaction_lines
),

orders as (
    select
        customer_id,
        order_id,
        min(order_at) as order_at,
        -- summed as decimals: parallel double sums differ in the last bits between runs
        sum(amount::decimal(38, 4))::double as amount,
        sum(quantity)::double as quantity,
        -- the first line speaks for the order; lines of one order share a status
        arg_min(status, _row_number) as status,
        arg_min(currency, _row_number) as currency,
        arg_min(channel, _row_number) as channel,
        arg_min(payment_method, _row_number) as payment_method,
        count(*)::integer as line_count,
        -- the id the order was delivered under (re-keyed as known at a past date by the
        -- churn step's training, pipelines/core/identity.py)
        min(source_customer_id) as source_customer_id
    from lines
    group by customer_id, order_id
),

final as (
    select
        customer_id,
        order_id,
        order_at,
        order_at::date as order_date,
        amount,
        quantity,
        status,
        -- a $0 completed order (a free or fully discounted one) is still a purchase;
        -- negative "completed" lines were already made returns in staging
        status = 'completed' as is_completed_order,
        currency,
        channel,
        payment_method,
        line_count,
        source_customer_id
    from orders
)

select * from final
