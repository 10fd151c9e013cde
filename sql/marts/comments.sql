-- Descriptions of every published table and column, stored in DuckDB's catalog so that BI
-- tools (DBeaver, Metabase, duckdb's duckdb_columns()) show them next to the data.
-- Run after every marts table is built: `create or replace` drops a table's comments.
-- The expected_purchases_<h>d columns of marts.customer_360 depend on the configured
-- horizons; pipelines/marts.py comments them. Units: amounts in the base currency, times UTC.

-- marts.customer_360 -------------------------------------------------------------------
comment on table marts.customer_360 is 'One row per customer known at as_of (buyers and prospects): profile, RFM, CLV, churn risk, tier, lifecycle stage and recommended action. Current run only.';
comment on column marts.customer_360.customer_id is 'Unified customer id (the surviving id after identity resolution); text, leading zeros kept.';
comment on column marts.customer_360.email is 'E-mail address, trimmed and lower-cased; NULL when unknown or invalid.';
comment on column marts.customer_360.phone is 'Phone number in E.164 format; NULL when unknown or invalid.';
comment on column marts.customer_360.full_name is 'Full name as delivered by the most recently updated customer record.';
comment on column marts.customer_360.birth_date is 'Date of birth; NULL when unknown or implausible.';
comment on column marts.customer_360.city is 'City of the customer record.';
comment on column marts.customer_360.country is 'Country (ISO 3166-1 alpha-2).';
comment on column marts.customer_360.marketing_consent is 'Latest marketing consent statement: true = may be contacted for marketing; NULL = unknown.';
comment on column marts.customer_360.first_purchase_at is 'Timestamp (UTC) of the first completed order on or before as_of; NULL for prospects.';
comment on column marts.customer_360.last_purchase_at is 'Timestamp (UTC) of the last completed order on or before as_of; NULL for prospects.';
comment on column marts.customer_360.frequency is 'BG/NBD frequency: repeat purchases (completed orders after the first) on or before as_of.';
comment on column marts.customer_360.recency is 'BG/NBD recency: time from the first to the last completed order, in the model time unit (days or weeks).';
comment on column marts.customer_360."T" is 'BG/NBD T: time from the first completed order to as_of (the end of the observation), in the model time unit (days or weeks).';
comment on column marts.customer_360.monetary_value is 'Gamma-Gamma monetary value: mean amount of the repeat orders (currency units); 0 without repeat orders.';
comment on column marts.customer_360.orders_total is 'Orders of any status (completed, cancelled, refunded, returned) on or before as_of.';
comment on column marts.customer_360.orders_completed is 'Completed orders on or before as_of (RFM frequency).';
comment on column marts.customer_360.revenue_total is 'Gross revenue: sum of completed order amounts on or before as_of (currency units).';
comment on column marts.customer_360.net_revenue is 'Net revenue: revenue_total plus returns and refunds (negative amounts) on or before as_of (currency units); RFM monetary. Negative for a customer whose only orders were returns: the column sums to the ledger of the loaded lines.';
comment on column marts.customer_360.recency_days is 'Days from the last completed order date to as_of (0 = ordered on as_of); RFM recency.';
comment on column marts.customer_360.r_score is 'RFM recency score (higher = bought more recently).';
comment on column marts.customer_360.f_score is 'RFM frequency score (higher = more completed orders).';
comment on column marts.customer_360.m_score is 'RFM monetary score (higher = more net revenue).';
comment on column marts.customer_360.rfm_segment is 'RFM segment named by the configured RFM grid (e.g. champions, at_risk); NULL for prospects.';
comment on column marts.customer_360.p_alive is 'BG/NBD probability (0 to 1) that the customer is still active at as_of; NULL when the model was not fitted.';
comment on column marts.customer_360.expected_order_value is 'Gamma-Gamma expected mean order value (currency units); NULL when the model was not fitted.';
comment on column marts.customer_360.predicted_clv is 'Predicted customer lifetime value over the configured CLV horizon, discounted at the configured annual rate (currency units); NULL when not fitted.';
comment on column marts.customer_360.expected_next_order_date is 'Expected date of the next completed order from the BG/NBD model; NULL when not predictable.';
comment on column marts.customer_360.churn_probability is 'Churn-risk model probability (0 to 1) of no completed order within the churn horizon after as_of; NULL for prospects.';
comment on column marts.customer_360.churn_band is 'Churn-risk band from churn_probability: low, medium or high; NULL for prospects.';
comment on column marts.customer_360.value_tier is 'Value tier: strategic, key, general or potential (configured tier rules).';
comment on column marts.customer_360.lifecycle_stage is 'Lifecycle stage at as_of: prospect, new, active, at_risk, lapsed or reactivated.';
comment on column marts.customer_360.recommended_action is 'Recommended marketing or care action from the configured playbook.';
comment on column marts.customer_360.as_of is 'Observation date of the run: nothing dated after it was used.';
comment on column marts.customer_360.run_id is 'Identifier of the pipeline run that built the row (audit.runs.run_id).';

-- marts.segment_summary ----------------------------------------------------------------
comment on table marts.segment_summary is 'One row per run, dimension and segment: size and value of each segment of marts.customer_360. History: every run kept; a rerun replaces its rows.';
comment on column marts.segment_summary.run_id is 'Identifier of the pipeline run (audit.runs.run_id).';
comment on column marts.segment_summary.as_of is 'Observation date of the run.';
comment on column marts.segment_summary.dimension is 'The customer_360 column segmented on: rfm_segment, value_tier, lifecycle_stage, recommended_action or churn_band.';
comment on column marts.segment_summary.segment is 'Value of the dimension; unassigned = customers without a value (e.g. prospects have no RFM segment or churn band).';
comment on column marts.segment_summary.customers is 'Customers in the segment.';
comment on column marts.segment_summary.share_of_customers is 'customers / all customers of marts.customer_360 (0 to 1); adds up to 1 per dimension.';
comment on column marts.segment_summary.consenting_customers is 'Customers in the segment with marketing_consent = true (contactable for marketing).';
comment on column marts.segment_summary.revenue_total is 'Sum of customer_360.revenue_total (gross revenue of completed orders, currency units).';
comment on column marts.segment_summary.net_revenue is 'Sum of customer_360.net_revenue (after returns and refunds, currency units).';
comment on column marts.segment_summary.average_predicted_clv is 'Mean predicted_clv of the segment customers that have one (currency units); NULL when none has.';
comment on column marts.segment_summary.total_predicted_clv is 'Sum of predicted_clv of the segment (currency units); NULL when no customer has one.';
comment on column marts.segment_summary.average_churn_probability is 'Mean churn_probability of the segment customers that have one (0 to 1); NULL when none has.';

-- marts.kpi_monthly --------------------------------------------------------------------
comment on table marts.kpi_monthly is 'One row per run and calendar month (UTC), from the month of the first completed order to the as-of month: customers, retention, churn, revenue, NPS, CSAT, complaints, support response. Definitions in docs/kpis.md. History: every run kept; a rerun replaces its rows.';
comment on column marts.kpi_monthly.run_id is 'Identifier of the pipeline run (audit.runs.run_id).';
comment on column marts.kpi_monthly.as_of is 'Observation date of the run: orders and events dated after it are not counted.';
comment on column marts.kpi_monthly.month is 'First day of the calendar month (UTC).';
comment on column marts.kpi_monthly.is_partial_month is 'True for the as-of month when as_of is before its last day: the month is incomplete and its counts, retention and churn are not comparable with full months.';
comment on column marts.kpi_monthly.active_customers is 'Customers with at least one completed order in the month.';
comment on column marts.kpi_monthly.new_customers is 'Active customers whose first completed order ever is in the month.';
comment on column marts.kpi_monthly.returning_customers is 'Active customers who had a completed order before the month (active_customers - new_customers).';
comment on column marts.kpi_monthly.repeat_purchase_rate is 'Share (0 to 1) of the active customers with two or more completed orders in the month; NULL without active customers.';
comment on column marts.kpi_monthly.retention_rate is 'Share (0 to 1) of the customers active in the previous month who are active again in this month; NULL when nobody was active in the previous month.';
comment on column marts.kpi_monthly.churn_rate is 'Share (0 to 1) of the customers active in the previous month who are not active in this month (1 - retention_rate); NULL when nobody was active in the previous month.';
comment on column marts.kpi_monthly.orders is 'Completed orders placed in the month.';
comment on column marts.kpi_monthly.revenue is 'Gross revenue: sum of the amounts of the completed orders of the month (currency units); returns not deducted.';
comment on column marts.kpi_monthly.average_order_value is 'revenue / orders (currency units); NULL without orders.';
comment on column marts.kpi_monthly.average_predicted_clv is 'Mean predicted_clv of marts.customer_360 (customers with a prediction), on the as-of month row only; NULL on every other month (no prediction is made as of past months).';
comment on column marts.kpi_monthly.nps is 'Net Promoter Score of the NPS survey responses (0-10) in the month: % promoters (9-10) minus % detractors (0-6), in percentage points (-100 to 100); NULL without responses.';
comment on column marts.kpi_monthly.csat is 'Customer satisfaction: share (0 to 1) of the CSAT survey responses (1-5) in the month scoring 4 or 5; NULL without responses.';
comment on column marts.kpi_monthly.complaint_rate is 'Complaint events in the month per completed order in the month (can exceed 1); NULL without orders.';
comment on column marts.kpi_monthly.median_first_response_hours is 'Median first-response time (hours) of the support tickets opened in the month (event value); mean of the two middle values for an even count; NULL without tickets.';

-- marts.data_quality -------------------------------------------------------------------
comment on table marts.data_quality is 'One row per run, source, file, measure and rule: how every input row was accounted for (read = loaded + quarantined + duplicate) and how source ids became customers. History: every run kept; a rerun replaces its rows.';
comment on column marts.data_quality.run_id is 'Identifier of the pipeline run (audit.runs.run_id).';
comment on column marts.data_quality.as_of is 'Observation date of the run.';
comment on column marts.data_quality.source is 'Source of the file: transactions, customers or events; all for the identity measures.';
comment on column marts.data_quality.file_name is 'Name of the ingested file (raw.files.file_name); NULL for the identity measures.';
comment on column marts.data_quality.file_sha256 is 'SHA-256 of the file content, which tells apart two deliveries under one name; NULL for the identity measures.';
comment on column marts.data_quality.measure is 'rows_read, rows_loaded, rows_quarantined, rows_duplicate (per file), quarantined_by_rule, field_blanked_by_rule (per file and rule), source_customer_ids, customers, customers_unified (source all).';
comment on column marts.data_quality.rule is 'Validation rule for the by_rule measures (reader: <reason> for records the reader could not split); NULL otherwise.';
comment on column marts.data_quality."rows" is 'Count for the measure. By rule, a row breaking several rules counts under each; for the identity measures it counts customer ids.';

-- marts.model_parameters ---------------------------------------------------------------
comment on table marts.model_parameters is 'One row per run, model and fitted parameter (BG/NBD r, alpha, a, b; Gamma-Gamma p, q, gamma; the penalizer used). History: every run kept; a rerun replaces its rows.';
comment on column marts.model_parameters.run_id is 'Identifier of the pipeline run (audit.runs.run_id).';
comment on column marts.model_parameters.as_of is 'Observation date of the run: the data the model was fitted on ends there.';
comment on column marts.model_parameters.model is 'Model: bgnbd (Fader, Hardie and Lee 2005) or gamma_gamma (Fader, Hardie and Lee 2005, spend model).';
comment on column marts.model_parameters.parameter is 'Parameter name as in the lifetimes library (r, alpha, a, b, p, q, gamma) or penalizer.';
comment on column marts.model_parameters.value is 'Fitted value of the parameter.';
comment on column marts.model_parameters.std_error is 'Standard error of the estimate; NULL where none is computed (e.g. the penalizer).';

-- marts.model_metrics ------------------------------------------------------------------
comment on table marts.model_metrics is 'One row per run, model and metric: fit diagnostics, holdout and test metrics next to a naive baseline, and whether each model was fitted. History: every run kept; a rerun replaces its rows.';
comment on column marts.model_metrics.run_id is 'Identifier of the pipeline run (audit.runs.run_id).';
comment on column marts.model_metrics.as_of is 'Observation date of the run.';
comment on column marts.model_metrics.model is 'Model or comparison the metric belongs to (e.g. bgnbd, gamma_gamma, next_order_date, churn, churn_vs_recency).';
comment on column marts.model_metrics.metric is 'Metric name (e.g. holdout_mae_repeat_purchases, roc_auc); is_fitted = whether the model was fitted in this run.';
comment on column marts.model_metrics.value is 'Value of the metric for the model; for is_fitted 1 = fitted, 0 = skipped or failed.';
comment on column marts.model_metrics.baseline is 'Value of the same metric for the naive baseline on the same data (lower error or higher AUC than it = the model adds value); NULL when there is none.';
comment on column marts.model_metrics.message is 'For is_fitted rows: the status (fitted, skipped, failed) and its reason; NULL for other metrics.';
