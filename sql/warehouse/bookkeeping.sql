-- The warehouse's bookkeeping tables: every persistent table that no SQL model builds.
-- (The models - staging.*, core.*, models.*, marts.* - are each built by their own file
-- under sql/; raw.<source> tables follow the canonical fields, pipelines/load/ingest.py.)
-- Run by pipelines.sqlrun.ensure_bookkeeping_tables before any step writes one of them;
-- every statement is idempotent. Columns are documented in README.md ("What the warehouse
-- holds") and beside the code that writes each table.

create schema if not exists raw;
create schema if not exists quarantine;
create schema if not exists audit;
create schema if not exists models;

-- raw: what arrived (pipelines/load/ingest.py, pipelines/load/clean.py)
-- One file can feed several sources (order lines that carry the customer's attributes,
-- mapped as transactions and as customers): a file is known per source.
create table if not exists raw.files (
    file_sha256 varchar not null, source varchar not null, file_path varchar,
    file_name varchar, size_bytes bigint, status varchar, rows_read bigint,
    rows_rejected bigint, reader varchar, columns_ignored varchar[],
    columns_missing varchar[], ingested_at timestamp, run_id varchar,
    primary key (source, file_sha256));
-- the reading fingerprint (pipelines/load/ingest.py reading_fingerprint); added with
-- incremental runs, NULL for files read before
alter table raw.files add column if not exists read_fingerprint varchar;

create table if not exists raw.rejected_rows (
    source varchar, _file_sha256 varchar, _source_file varchar, _row_number bigint,
    line_number bigint, reason varchar, raw_line varchar, _ingested_at timestamp,
    _run_id varchar);

create table if not exists raw.deliveries (
    source varchar, file_path varchar, file_sha256 varchar, status varchar,
    seen_at timestamp, run_id varchar);

-- each distinct (text, country) phone pair parsed once, ever (libphonenumber is slow)
create table if not exists raw.phone_numbers (
    phone_text varchar, country varchar, phone varchar);

-- quarantine: fields blanked in kept rows (pipelines/load/quarantine.py); the rows themselves go to
-- quarantine.<source>, rebuilt by each validation
create table if not exists quarantine.field_issues (
    run_id varchar, source varchar, _file_sha256 varchar, _row_number bigint,
    rule varchar, field varchar, original_value varchar);

-- audit: runs, validation results, source freshness, erasure (pipelines/runlog.py,
-- quality.py, freshness.py, erasure.py)
create table if not exists audit.runs (
    run_id varchar primary key, started_at timestamp, ended_at timestamp,
    status varchar, as_of date, requested_as_of date, config_path varchar,
    config_sha256 varchar, package_versions json, rows_per_step json,
    message varchar);
-- added with incremental runs; a warehouse made before gains it here
alter table audit.runs add column if not exists step_seconds json;
-- added with the Dask runner (issue 13): where the per-customer stages ran ('local' or
-- 'dask', [execution] runner) and into how many customer buckets (NULL for local)
alter table audit.runs add column if not exists runner varchar;
alter table audit.runs add column if not exists buckets integer;

-- the published runs (pipelines/publish/journal.py): a run is here once every output it
-- wrote (exports, serving database, report, exports/latest) was swapped in; the history
-- marts keep the rows of these runs only. outputs: the published paths.
create table if not exists audit.publications (
    run_id varchar primary key, as_of date, published_at timestamp, outputs json);
-- (a warehouse made before publications were recorded gains its succeeded runs in
-- pipelines/runlog.py record_run_start)

create table if not exists audit.validation_results (
    run_id varchar, source varchar, rule varchar, expectation_type varchar,
    column_name varchar, severity varchar, success boolean, element_count bigint,
    unexpected_count bigint, validated_at timestamp);

-- each delivered file's staging and validation, once per fingerprint of what decides them
-- (pipelines/load/processing.py); a file without a row under the current fingerprint is
-- processed by the next run
create table if not exists audit.file_processing (
    source varchar, file_sha256 varchar, fingerprint varchar, run_id varchar,
    processed_at timestamp, rows_staged bigint, rows_quarantined bigint,
    fields_blanked bigint, primary key (source, file_sha256));

-- files whose rows stopped a run (more failing rows than allowed): left out from then on,
-- unless the source's fingerprint (its options or rules) changes
create table if not exists audit.rejected_files (
    source varchar, file_sha256 varchar, run_id varchar, message varchar,
    rejected_at timestamp, fingerprint varchar);

-- customer ids that changed (merge or split), per run (sql/audit/customer_id_changes.sql)
create table if not exists audit.customer_id_changes (
    run_id varchar, previous_customer_id varchar, customer_id varchar, reason varchar,
    source_customer_ids bigint, changed_at timestamp);

-- one row per source with warn_after_days or error_after_days, per run
-- (pipelines/load/freshness.py); newest_at and age_days are NULL for a source without rows
create table if not exists audit.source_freshness (
    run_id varchar, source varchar, newest_at timestamp, age_days integer,
    warn_after_days integer, error_after_days integer, status varchar, message varchar,
    checked_at timestamp);

create table if not exists audit.settings (key varchar primary key, value varchar);

-- value_sha256 = sha256(prefix || normalised value), prefix derived from the erasure key
-- named by key_id (pipelines/erasure_keys.py); key_id 'salt-v0': the legacy salted hashes
create table if not exists audit.erasure_tombstones (
    kind varchar, value_sha256 varchar, erased_at timestamp,
    primary key (kind, value_sha256));
-- added with keyed tombstones; rows made before are the legacy salted ones
alter table audit.erasure_tombstones add column if not exists key_id varchar;

create table if not exists audit.erased_rows (
    run_id varchar, source varchar, file_sha256 varchar, rows bigint,
    reason varchar, erased_at timestamp);

-- models: the model log, one set per run (pipelines/scoring/model_log.py, pipelines/scoring/churn.py)
create table if not exists models.model_parameters (
    run_id varchar, model varchar, parameter varchar, value double, std_error double);

create table if not exists models.model_metrics (
    run_id varchar, model varchar, metric varchar, value double, baseline double);

create table if not exists models.model_runs (
    run_id varchar, model varchar, status varchar, message varchar);

create table if not exists models.churn_importances (
    run_id varchar, feature varchar, importance_mean double, importance_std double);
