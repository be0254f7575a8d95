//! End-to-end tests of the origin: real PostgreSQL (a database per test), the origin on an
//! ephemeral loopback port, HTTP through reqwest.

mod accounts;
mod auth;
mod budgets;
mod comparisons;
mod conversations;
mod db_faults;
mod fail_closed;
mod health;
mod keys;
mod migrations;
mod models_admin;
mod observability;
mod outbox;
mod pagination;
mod search;
mod static_files;
mod support;
