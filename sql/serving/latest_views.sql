-- marts.<history table>_latest: the rows of the published run (the run of
-- marts.customer_360) of every history table, so BI needs no
-- "where run_id = (select max(run_id) ...)". Applied to the working database before each
-- publish (the publish step copies views into the serving database).
create or replace view marts.segment_summary_latest as
select * from marts.segment_summary
where run_id = (select max(run_id) from marts.customer_360);

create or replace view marts.kpi_monthly_latest as
select * from marts.kpi_monthly
where run_id = (select max(run_id) from marts.customer_360);

create or replace view marts.data_quality_latest as
select * from marts.data_quality
where run_id = (select max(run_id) from marts.customer_360);

create or replace view marts.model_parameters_latest as
select * from marts.model_parameters
where run_id = (select max(run_id) from marts.customer_360);

create or replace view marts.model_metrics_latest as
select * from marts.model_metrics
where run_id = (select max(run_id) from marts.customer_360);

create or replace view marts.customer_id_changes_latest as
select * from marts.customer_id_changes
where run_id = (select max(run_id) from marts.customer_360);

comment on view marts.segment_summary_latest is 'marts.segment_summary, rows of the published run only.';
comment on view marts.kpi_monthly_latest is 'marts.kpi_monthly, rows of the published run only.';
comment on view marts.data_quality_latest is 'marts.data_quality, rows of the published run only.';
comment on view marts.model_parameters_latest is 'marts.model_parameters, rows of the published run only.';
comment on view marts.model_metrics_latest is 'marts.model_metrics, rows of the published run only.';
comment on view marts.customer_id_changes_latest is 'marts.customer_id_changes, rows of the published run only.';
